"""Day-two operations with real daemons: ``zskill reload`` (and SIGHUP)
applying a changed zskill.toml under load, an invalid one refused whole,
``env_file`` read again at restart and reload and never printed, and watch
mode upgrading a skill on save and rolling back a broken save."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import (
    EXAMPLES,
    InBackground,
    Load,
    example,
    running_daemon,
    short_dir,
    variant,
    wait_for,
    write_config,
    zskill,
)

from ipc import ConfigError
from orchestrator import AsyncClient


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = short_dir("zr")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pids(d: Any) -> dict[str, int | None]:
    return {s["name"]: s["pid"] for s in d.client().list()}


def test_reload_adds_removes_and_restarts_under_load_with_untouched_pids_kept(tmp: Path) -> None:
    # A skill must announce its config name: "mail" is echo renamed.
    mail = variant(tmp, "mail", version="1.0.0", replace={'Skill("echo"': 'Skill("mail"'})
    echo2 = variant(tmp, "echo2", version="2.0.0")  # echo's new path: new code
    skills = {
        "clock": example("clock"),  # untouched
        "echo": example("echo", env={"LEVEL": "info"}),  # changed
        "slow": example("slow"),  # removed
    }
    with running_daemon(skills, root=tmp) as d:
        before = d.wait_running("clock", "echo", "slow")
        slow_pid = before["slow"]["pid"]
        c = d.client()
        with (
            Load(c, "clock", "now", {}) as clock_load,
            Load(c, "echo", "say", {"text": "c"}) as echo_load,
        ):
            clock_load.wait_calls(50)
            echo_load.wait_calls(50)
            # A call in flight on the skill about to be removed: it drains.
            slow_call = InBackground(c, {"sleep": ("slow", "sleep", {"seconds": 1.0})})
            wait_for(lambda: d.status("slow")["in_flight"] == 1, what="the slow call running")
            write_config(
                d.config,
                {
                    "clock": example("clock"),
                    "echo": example(
                        "echo", path=str(echo2), env={"LEVEL": "debug"}, max_queued=500
                    ),
                    "mail": example("echo", path=str(mail)),
                },
            )
            progress: list[dict[str, Any]] = []
            result = c.reload(on_progress=progress.append)
            clock_load.wait_calls(50)
            echo_load.wait_calls(50)
        assert clock_load.failures == [] and echo_load.failures == []
        assert slow_call.join()["sleep"].value == 1.0
        assert set(echo_load.versions) == {"1.0.0", "2.0.0"}
        assert result["ok"], result
        by_name = {o["skill"]: o for o in result["skills"]}
        assert {n: o["action"] for n, o in by_name.items()} == {
            "clock": "keep",
            "echo": "restart",
            "mail": "add",
            "slow": "remove",
        }
        assert by_name["echo"]["keys"] == ["env", "max_queued", "path"]
        assert sorted(o["skill"] for o in progress) == sorted(by_name)
        after = d.wait_running("clock", "echo", "mail")
        assert after["clock"]["pid"] == before["clock"]["pid"]  # untouched
        assert after["echo"]["pid"] != before["echo"]["pid"]
        assert c.call("echo", "env", {"name": "LEVEL"}) == "debug"
        assert c.call("mail", "say", {"text": "hi"}) == "hi"
        assert "slow" not in after
        assert not psutil.pid_exists(slow_pid) or psutil.Process(slow_pid).status() == "zombie"
        # Reloading the same file again changes nothing at all.
        again = c.reload()
        assert {o["action"] for o in again["skills"]} == {"keep"}
        assert pids(d) == {n: after[n]["pid"] for n in ("clock", "echo", "mail")}


def test_an_invalid_config_is_refused_whole_and_nothing_changes(tmp: Path) -> None:
    good = {"echo": example("echo"), "clock": example("clock")}
    with running_daemon(good, root=tmp) as d:
        d.wait_running("echo", "clock")
        c = d.client()
        before = pids(d)
        bad_configs = {
            "path .*nowhere does not exist": {
                **good,
                "new": example("echo", path=str(tmp / "nowhere")),
            },
            "no such file": {
                "echo": example("echo", env={"X": "1"}, env_file=".env-missing"),
                "clock": example("clock"),
            },
        }
        for reason, skills in bad_configs.items():
            write_config(d.config, {"extra": example("slow"), **skills})  # another skill too
            with pytest.raises(ConfigError, match=reason):
                c.reload()
            assert pids(d) == before, reason
        with pytest.raises(ConfigError, match="no such file"):  # the same from AsyncClient
            asyncio.run(_async_reload(d.config))
        # Through the CLI: exit 2 with the reason; a file that does not parse too.
        d.config.write_text(d.config.read_text() + "\n[skills.echo\n")
        out = zskill(d.config, "reload")
        assert out.returncode == 2, out
        assert "not valid TOML" in out.stderr
        write_config(d.config, {**good, "echo": example("echo", grace_s="soon")})
        out = zskill(d.config, "reload")
        assert out.returncode == 2 and "grace_s" in out.stderr, out
        # SIGHUP with a bad file: refused too, said so in the events.
        write_config(d.config, bad_configs["no such file"])
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any(e["type"] == "reload" and not e["data"]["ok"] for e in c.events()),
            what="the refused reload's event",
        )
        assert pids(d) == before
        assert d.proc.poll() is None  # SIGHUP did not end the daemon
        # A good file whose new settings cannot run: that restart rolls back,
        # the old process and settings keep serving, and the reload exits 1.
        write_config(d.config, {**good, "echo": example("echo", command=["python", "-c", "1/0"])})
        out = zskill(d.config, "reload")
        assert out.returncode == 1, out
        assert "the old settings keep serving" in out.stdout, out
        assert pids(d) == before
        write_config(d.config, good)  # what runs: nothing to do
        assert {o["action"] for o in c.reload()["skills"]} == {"keep"}


async def _async_reload(config: Path) -> dict[str, Any]:
    async with AsyncClient(config) as c:
        return await c.reload()


def test_env_file_read_again_by_restart_reload_and_sighup_never_printed(tmp: Path) -> None:
    env_file = tmp / ".env"
    secrets = [f"sk-live-{n}-7f3a9c" for n in range(4)]
    env_file.write_text(f"# the key\nAPI_KEY={secrets[0]}\n")
    with running_daemon({"echo": example("echo", env_file=".env")}, root=tmp) as d:
        d.wait_running("echo")
        c = d.client()
        assert c.call("echo", "env", {"name": "API_KEY"}) == secrets[0]
        env_file.write_text(f"API_KEY={secrets[1]}\n")
        assert zskill(d.config, "restart", "echo").returncode == 0
        assert c.call("echo", "env", {"name": "API_KEY"}) == secrets[1]
        env_file.write_text(f"API_KEY={secrets[2]}\n")
        out = zskill(d.config, "reload")
        assert out.returncode == 0, out
        assert "restarted (env_file)" in out.stdout
        assert c.call("echo", "env", {"name": "API_KEY"}) == secrets[2]
        env_file.write_text(f"API_KEY={secrets[3]}\n")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: c.call("echo", "env", {"name": "API_KEY"}) == secrets[3], 20)
        # A bad line: refused, and the line (maybe a pasted key) not shown.
        env_file.write_text(f"{secrets[3]}\n")
        bad = zskill(d.config, "reload")
        assert bad.returncode == 2 and "line 1: expected NAME=value" in bad.stderr, bad
        printed = [
            out.stdout + out.stderr + bad.stdout + bad.stderr,
            zskill(d.config, "list", "--json").stdout,
            zskill(d.config, "events", "--json").stdout,
            zskill(d.config, "reload", "--json").stdout,
            (d.run_dir / "events.jsonl").read_text(),
            (d.run_dir / "logs" / "zskilld.log").read_text(),
            d.output(),
        ]
        for text in printed:
            assert not any(s in text for s in secrets), text[-2000:]


# --- watch mode ----------------------------------------------------------------------


def _with_version(code: str, version: str) -> str:
    new, n = re.subn(
        r'^skill = Skill\("echo", .*\)$',
        f'skill = Skill("echo", version={version!r})',
        code,
        flags=re.M,
    )
    assert n == 1
    return new


def test_watch_upgrades_on_save_and_rolls_back_a_broken_save(tmp: Path) -> None:
    src = tmp / "echo"
    shutil.copytree(EXAMPLES / "echo", src, ignore=shutil.ignore_patterns("__pycache__"))
    main = src / "main.py"
    with running_daemon(
        {"echo": example("echo", path=str(src))}, root=tmp, up_args=("--watch",)
    ) as d:
        d.wait_running("echo")
        c = d.client()
        with Load(c, "echo", "say", {"text": "w"}) as load:
            load.wait_calls(30)
            main.write_text(_with_version(main.read_text(), "1.1.0"))
            wait_for(lambda: d.status("echo")["version"] == "1.1.0", 20, what="the upgrade on save")
            # Editors' files and caches are not changes.
            for name in (".main.py.swp", "main.py~", "4913"):
                (src / name).write_text("x")
            load.wait_calls(30)
            good = main.read_text()
            main.write_text(good + "\ndef broken(:\n")
            wait_for(
                lambda: any(e["type"] == "rolled_back" for e in c.events("echo")),
                20,
                what="the broken save rolled back",
            )
            load.wait_calls(30)
        assert load.failures == []
        st = d.status("echo")
        assert (st["state"], st["version"]) == ("running", "1.1.0")
        assert c.call_detailed("echo", "say", {"text": "x"}).version == "1.1.0"
        events = c.events("echo", limit=500)
        changed = [e["data"] for e in events if e["type"] == "changed"]
        assert [ch["files"] for ch in changed] == [["main.py"], ["main.py"]], changed
        # The fix is taken on the next save.
        main.write_text(_with_version(good, "1.2.0"))  # one write: one change
        wait_for(lambda: d.status("echo")["version"] == "1.2.0", 20, what="the fixed save")
        assert json.loads(zskill(d.config, "list", "--json").stdout)[0]["version"] == "1.2.0"
