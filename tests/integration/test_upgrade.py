"""Zero-downtime upgrades with real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import (
    EXAMPLES,
    Daemon,
    InBackground,
    Load,
    example,
    running_daemon,
    short_dir,
    variant,
    wait_for,
)

from orchestrator import BadRequest, UpgradeFailed, UpgradeInProgress

BROKEN = EXAMPLES / "broken"


@pytest.fixture
def zs() -> Iterator[Daemon]:
    skills = {
        "echo": example("echo", grace_s=10, start_timeout_s=5, health_timeout_s=2),
        "slow": example("slow", concurrency=4, grace_s=10),
    }
    with running_daemon(skills) as d:
        d.wait_running("echo", "slow")
        yield d


@pytest.fixture
def releases_dir() -> Iterator[Path]:
    d = short_dir("zr")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pids(d: Daemon) -> dict[str, int]:
    c = d.client()
    return {s["name"]: s["pid"] for s in c.list()}


def test_upgrade_from_dir_serves_new_version(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    before = pids(zs)
    v2 = variant(releases_dir, "v2", version="2.0.0")
    steps: list[dict[str, Any]] = []
    report = c.upgrade("echo", v2, on_progress=steps.append)
    assert report["old_version"] == "1.0.0" and report["new_version"] == "2.0.0"
    assert [s["step"] for s in steps if s["status"] == "ok"] == [
        "prepare",
        "spawn",
        "hello",
        "health",
        "switch",
        "drain",
        "done",
    ]
    r = c.call_detailed("echo", "say", {"text": "hi"})
    assert (r.value, r.version) == ("hi", "2.0.0")
    after = pids(zs)
    zs.known_pids.add(after["echo"])
    assert after["echo"] != before["echo"]
    assert not psutil.pid_exists(before["echo"])
    assert after["slow"] == before["slow"], "another skill's process was touched"


def test_calls_running_at_the_switch_finish_on_the_old_version(
    zs: Daemon, releases_dir: Path
) -> None:
    c = zs.client()
    v2 = variant(releases_dir, "slow2", base="slow", version="2.0.0")
    results: list[Any] = []

    def long_call() -> None:
        results.append(c.call_detailed("slow", "sleep", {"seconds": 1.5}, timeout=20))

    threads = [threading.Thread(target=long_call) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: zs.status("slow")["in_flight"] == 3, 10, what="3 calls in flight")
    report = c.upgrade("slow", v2)
    for t in threads:
        t.join(20)
    assert report["new_version"] == "2.0.0"
    assert [(r.value, r.version) for r in results] == [(1.5, "1.0.0")] * 3
    # the drain waited for them
    drain = next(s for s in report["steps"] if s["step"] == "drain")
    assert drain["elapsed_s"] >= 0.5
    assert c.call_detailed("slow", "sleep", {"seconds": 0}).version == "2.0.0"


def test_zero_failed_calls_across_repeated_upgrades(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    dirs = [variant(releases_dir, f"v{i}", version=f"1.{i}.0") for i in range(1, 6)]
    with Load(c, "echo", "say", {"text": "x"}, callers=4) as load:
        load.wait_calls(50)
        for d in dirs:
            c.upgrade("echo", d)
            load.wait_calls(20)
    assert load.failures == []
    assert load.calls > 100
    assert set(load.versions) >= {"1.0.0", "1.5.0"}
    assert zs.status("echo")["version"] == "1.5.0"


def test_second_upgrade_of_same_skill_is_refused(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    slow_health = variant(
        releases_dir,
        "slowhealth",
        version="2.0.0",
        replace={
            "def healthy() -> bool:\n    return True": (
                "def healthy() -> bool:\n    import time\n    time.sleep(1.0)\n    return True"
            )
        },
    )
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(c.upgrade("echo", slow_health)))
    t.start()
    wait_for(lambda: zs.status("echo")["state"] == "upgrading", 10, what="upgrade under way")
    c2 = zs.client()
    with pytest.raises(UpgradeInProgress):
        c2.upgrade("echo", slow_health)
    # another skill may upgrade at the same time
    report = c2.upgrade("slow", variant(releases_dir, "s2", base="slow", version="2.0.0"))
    assert report["new_version"] == "2.0.0"
    t.join(30)
    assert first["new_version"] == "2.0.0"


BROKEN_CASES = [
    "crash_at_start",
    "import_error",
    "exit_after_hello",
    "health_false",
    "health_raises",
    "no_hello",
    "health_hangs",
    "wrong_protocol",
    "wrong_name",
]


@pytest.mark.parametrize("case", BROKEN_CASES)
def test_broken_new_version_is_rolled_back(zs: Daemon, case: str) -> None:
    c = zs.client()
    before = pids(zs)
    with Load(c, "echo", "say", {"text": "x"}, callers=2) as load:
        load.wait_calls(10)
        with pytest.raises(UpgradeFailed) as ei:
            c.upgrade("echo", BROKEN / case)
        load.wait_calls(10)
    assert "1.0.0" in str(ei.value) or "rolled back" in str(ei.value)
    assert load.failures == []
    st = zs.status("echo")
    assert st["state"] == "running" and st["version"] == "1.0.0"
    assert st["pid"] == before["echo"]
    assert pids(zs)["slow"] == before["slow"]
    # nothing of the new version is left running (the killed process is
    # reaped just after UpgradeFailed is answered)
    wait_for(lambda: len(zs.status("echo")["instances"]) == 1, 5, what="the new process reaped")


def test_upgrade_from_missing_dir_or_without_entry_file(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    n_spawn = sum(1 for e in c.events("echo", limit=1000) if e["type"] == "spawn")
    with pytest.raises(BadRequest, match="does not exist"):
        c.upgrade("echo", releases_dir / "nowhere")
    empty = releases_dir / "empty"
    empty.mkdir()
    with pytest.raises(BadRequest, match=r"main\.py"):
        c.upgrade("echo", empty)
    assert sum(1 for e in c.events("echo", limit=1000) if e["type"] == "spawn") == n_spawn


def test_rollback_after_source_deleted(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    v2 = variant(releases_dir, "v2", version="2.0.0")
    v3 = variant(releases_dir, "v3", version="3.0.0")
    c.upgrade("echo", v2)
    c.upgrade("echo", v3)
    shutil.rmtree(v2)
    rels = c.releases("echo")
    assert [r["version"] for r in rels][:3] == ["3.0.0", "2.0.0", "1.0.0"]
    assert rels[0]["current"]
    report = c.rollback("echo")
    assert report["new_version"] == "2.0.0"
    assert c.call_detailed("echo", "say", {"text": "a"}).version == "2.0.0"
    assert next(r for r in c.releases("echo") if r["current"])["version"] == "2.0.0"


def test_tool_list_change_is_published(zs: Daemon, releases_dir: Path) -> None:
    c = zs.client()
    extra = (
        "@skill.tool()\ndef shout(text: str) -> str:\n"
        '    """Upper-case text."""\n    return text.upper()\n'
    )
    v2 = variant(releases_dir, "v2", version="2.0.0", extra=extra)
    with c.subscribe("echo") as stream:
        report = c.upgrade("echo", v2)
        assert report["tools_changed"]
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ev = stream.next(timeout=0.5)
            if ev is None:
                continue
            seen.append(ev)
            if ev.type == "deployed":
                break
    changed = [e for e in seen if e.type == "tools_changed"]
    assert changed and changed[0].data["added"] == ["shout"]
    steps = [e.data["step"] for e in seen if e.type == "rollout"]
    assert "switch" in steps and "drain" in steps
    assert c.call("echo", "shout", {"text": "hi"}) == "HI"
    assert "shout" in [t["name"] for t in c.tools("echo")["echo"]]


def test_cli_upgrade_exit_codes(zs: Daemon, releases_dir: Path) -> None:
    v2 = variant(releases_dir, "v2", version="2.0.0")
    cmd = [sys.executable, "-m", "orchestrator", "upgrade", "echo", "--config", str(zs.config)]
    ok = subprocess.run([*cmd, "--from", str(v2)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2.0.0" in ok.stdout
    bad = subprocess.run(
        [*cmd, "--from", str(BROKEN / "health_false")], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0
    assert "health" in (bad.stdout + bad.stderr)
    assert zs.status("echo")["version"] == "2.0.0"


def test_call_still_running_when_the_old_version_is_killed(releases_dir: Path) -> None:
    """Past grace_s and kill_timeout_s the old version is killed: its idempotent
    call is retried on the new version, the other answered OutcomeUnknown."""
    from orchestrator import OutcomeUnknown

    skills = {"slow": example("slow", concurrency=4, grace_s=0.3, kill_timeout_s=0.3)}
    with running_daemon(skills) as d:
        d.wait_running("slow")
        c = d.client()
        bg = InBackground(
            c,
            {
                "plain": ("slow", "sleep", {"seconds": 2.5}),
                "idem": ("slow", "sleep_idem", {"seconds": 2.5}),
            },
            timeout=20,
        )
        wait_for(lambda: d.status("slow")["in_flight"] == 2, 10, what="2 calls in flight")
        t0 = time.monotonic()
        report = c.upgrade("slow", variant(releases_dir, "s2", base="slow", version="2.0.0"))
        out = bg.join(20)
        assert report["new_version"] == "2.0.0"
        # killed well before the calls would have finished
        assert bg.finished_at["plain"] - t0 < 2.4, "killed before the call could finish"
        assert isinstance(out["plain"], OutcomeUnknown), out["plain"]
        assert "sleep" in str(out["plain"]) and "idempotent" in str(out["plain"])
        assert (out["idem"].value, out["idem"].version) == (2.5, "2.0.0")
