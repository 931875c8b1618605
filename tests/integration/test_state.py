"""State that outlives releases: data_dir, state handoff across an upgrade,
lifecycle hooks, drains sized by the calls' tail, release_exclude and a
command in a venv beside the source. Real daemons and skill processes."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import InBackground, Load, example, running_daemon, short_dir, variant, wait_for

from orchestrator import OutcomeUnknown, UpgradeFailed


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = short_dir("zst")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def notes(**overrides: Any) -> dict[str, Any]:
    return example("notes", concurrency=4, **overrides)


def test_state_handed_across_an_upgrade_under_load(tmp: Path) -> None:
    """The in-memory count of calls crosses the upgrade: no call fails, none
    is counted twice or lost, and calls made meanwhile wait, not fail."""
    with running_daemon({"notes": notes()}) as d:
        d.wait_running("notes")
        c = d.client()
        with Load(c, "notes", "hit", {}, callers=4) as load:
            load.wait_calls(100)
            report = c.upgrade("notes", variant(tmp, "v2", base="notes", version="2.0.0"))
            load.wait_calls(100)
        assert load.failures == []
        assert set(load.versions) == {"1.0.0", "2.0.0"}
        # Every call counted once, on whichever version: the count went on.
        assert c.call("notes", "hit", {}) == load.calls + 1
        handoff = [s for s in report["steps"] if s["step"] == "handoff"]
        assert handoff and handoff[0]["status"] == "ok"
        ev = [e["data"] for e in c.events("notes", 200) if e["type"] == "rollout"]
        done = [e for e in ev if e["step"] == "handoff" and e["status"] == "ok"]
        assert "bytes handed from version 1.0.0 to 2.0.0" in done[-1]["detail"]


def test_an_import_that_raises_rolls_back_with_the_state_kept(tmp: Path) -> None:
    bad = variant(
        tmp,
        "bad",
        base="notes",
        version="2.0.0",
        replace={'    _served = state["served"]': '    raise ValueError("cannot read this state")'},
    )
    with running_daemon({"notes": notes()}) as d:
        d.wait_running("notes")
        c = d.client()
        for _ in range(5):
            c.call("notes", "hit", {})
        with Load(c, "notes", "hit", {}, callers=2) as load:
            load.wait_calls(20)
            with pytest.raises(UpgradeFailed) as exc:
                c.upgrade("notes", bad)
            load.wait_calls(20)
        assert load.failures == []
        assert set(load.versions) == {"1.0.0"}
        assert exc.value.details["step"] == "handoff"
        assert "ValueError: cannot read this state" in str(exc.value)
        # The old version serves on, its count intact.
        assert c.call("notes", "hit", {}) == 5 + load.calls + 1
        assert d.status("notes")["version"] == "1.0.0"
        failed = [
            e["data"]
            for e in c.events("notes", 200)
            if e["type"] == "rollout" and e["data"]["status"] == "failed"
        ]
        assert "Traceback" in failed[-1]["detail"] and "take_over" in failed[-1]["detail"]


def test_data_dir_is_the_same_across_upgrade_restart_and_rollback(tmp: Path) -> None:
    """A note written by any version is read by every later one, and a
    rollback brings no stale copy back. on_stop ran for each drained process."""
    with running_daemon({"notes": notes()}) as d:
        d.wait_running("notes")
        c = d.client()
        data_dir = d.run_dir / "data" / "notes"
        first = c.call("notes", "where", {})
        assert Path(first["data_dir"]) == data_dir
        c.call("notes", "add", {"text": "from 1.0.0"})
        c.upgrade("notes", variant(tmp, "v2", base="notes", version="2.0.0"))
        second = c.call("notes", "where", {})
        assert second["cwd"] != first["cwd"]  # a release copy, not the source dir
        assert second["data_dir"] == first["data_dir"]
        assert c.call("notes", "add", {"text": "from 2.0.0"}) == 2
        c.restart("notes")
        assert c.call("notes", "read", {}) == ["from 1.0.0", "from 2.0.0"]
        c.rollback("notes")
        assert c.call("notes", "where", {})["version"] == "1.0.0"
        assert c.call("notes", "read", {}) == ["from 1.0.0", "from 2.0.0"]
        # Nothing was written beside the code.
        assert not (Path(second["cwd"]) / "notes.jsonl").exists()
        log = data_dir / "stopped.log"
        wait_for(lambda: len(log.read_text().splitlines()) >= 3, 10, what="on_stop three times")
        versions = [line.split()[0] for line in log.read_text().splitlines()]
        assert versions == ["1.0.0", "2.0.0", "2.0.0"]


def test_on_start_failure_is_a_failed_start_with_its_traceback(tmp: Path) -> None:
    broken = variant(
        tmp,
        "broken",
        base="notes",
        version="2.0.0",
        replace={'    _notes = skill.data_dir / "notes.jsonl"': '    raise OSError("disk gone")'},
    )
    with running_daemon({"notes": notes()}) as d:
        d.wait_running("notes")
        c = d.client()
        with pytest.raises(UpgradeFailed) as exc:
            c.upgrade("notes", broken)
        assert exc.value.details["step"] == "hello"
        text = str(exc.value)
        assert "exited with code 6" in text and "on_start raised OSError: disk gone" in text
        failed = [
            e["data"]
            for e in c.events("notes", 100)
            if e["type"] == "rollout" and e["data"]["status"] == "failed"
        ]
        assert "Traceback (most recent call last)" in failed[-1]["detail"]
        assert 'raise OSError("disk gone")' in failed[-1]["detail"]
        assert c.call("notes", "where", {})["version"] == "1.0.0"


def test_auto_grace_waits_for_a_long_call_a_short_fixed_grace_kills(tmp: Path) -> None:
    """Two skills alike but for grace_s: after calls of 2 s, "auto" sizes the
    drain at twice the longest (at least 4 s) and the 4 s call running at the
    restart ends; a fixed 0.3 s kills it."""

    def slow(name: str, **settings: Any) -> dict[str, Any]:
        src = variant(tmp, name, base="slow", replace={'Skill("slow"': f'Skill("{name}"'})
        return {**example("slow", kill_timeout_s=0.3, **settings), "path": str(src)}

    skills = {
        "auto": slow("auto", grace_s="auto", grace_min_s=0.3),
        "fixed": slow("fixed", grace_s=0.3),
    }
    with running_daemon(skills) as d:
        d.wait_running("auto", "fixed")
        c = d.client()
        warm = {k: (k, "sleep", {"seconds": 2.0}) for k in skills}
        InBackground(c, warm).join(20)
        bg = InBackground(c, {k: (k, "sleep", {"seconds": 4.0}) for k in skills})
        wait_for(
            lambda: all((d.status(k)["longest_call"] or {}).get("tool") == "sleep" for k in skills),
            10,
            what="both calls running",
        )
        longest = d.status("auto")["longest_call"]
        assert longest["running_s"] >= 0 and longest["instance"].startswith("auto-")
        # Both restarted at once: each restart's answer waits for its drain.
        restarts = [threading.Thread(target=c.restart, args=(k,)) for k in skills]
        for t in restarts:
            t.start()
        for t in restarts:
            t.join(20)
        out = bg.join(20)
        assert out["auto"].value == 4.0
        assert isinstance(out["fixed"], OutcomeUnknown), [
            (e["type"], e["data"]) for e in c.events("fixed", 100)
        ]
        ev = c.events("auto", 100)
        drain = [e["data"] for e in ev if e["type"] == "drain"][-1]
        assert 4.0 <= drain["grace_s"] <= 8.0 and drain["grace"].startswith("auto: 2 x")
        assert [x["tool"] for x in drain["calls"]] == ["sleep"]
        drained = [e["data"] for e in ev if e["type"] == "drained"][-1]
        assert drained["unfinished"] == [] and not drained["sigterm"]
        assert 0.5 < drained["waited_s"] < 4.0 and drained["calls"][0]["ran_s"] >= 3.9
        fixed = [e["data"] for e in c.events("fixed", 100) if e["type"] == "drained"][-1]
        assert fixed["sigterm"] and fixed["unfinished"] == [fixed["calls"][0]["call_id"]]


def _venv_skill(root: Path, name: str, version: str) -> Path:
    """A notes variant with a venv beside it: .venv/bin/python runs this
    interpreter, saying which venv it is in VIRTUAL_ENV."""
    src = variant(root, name, base="notes", version=version)
    python = src / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nVIRTUAL_ENV="{src / ".venv"}" exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (src / "debug.log").write_text("not code\n")
    (src / "cache").mkdir()
    (src / "cache" / "big.bin").write_bytes(b"x" * 1000)
    return src


def test_release_exclude_and_a_command_in_a_venv_beside_the_source(tmp: Path) -> None:
    v1 = _venv_skill(tmp, "v1", "1.0.0")
    v2 = _venv_skill(tmp, "v2", "2.0.0")
    skills = {
        "notes": {
            **notes(),
            "path": str(v1),
            "command": [".venv/bin/python", "main.py"],
            "release_exclude": [".venv", "*.log", "cache/big.bin"],
            "data_dir": str(tmp / "state"),
        }
    }

    def exe() -> str:
        return str(c.call("notes", "where", {})["venv"])

    with running_daemon(skills) as d:
        d.wait_running("notes")
        c = d.client()
        assert exe() == str(v1 / ".venv")
        assert Path(c.call("notes", "where", {})["data_dir"]) == tmp / "state"
        c.call("notes", "add", {"text": "kept"})
        c.upgrade("notes", v2)
        where = c.call("notes", "where", {})
        copy = Path(where["cwd"])
        assert copy != v2 and (copy / "main.py").exists()
        assert not (copy / ".venv").exists() and not (copy / "debug.log").exists()
        assert (copy / "cache").is_dir() and not (copy / "cache" / "big.bin").exists()
        assert exe() == str(v2 / ".venv")  # the venv beside --from's source
        c.rollback("notes")
        assert c.call("notes", "where", {})["version"] == "1.0.0"
        assert exe() == str(v1 / ".venv")
        assert c.call("notes", "read", {}) == ["kept"]
