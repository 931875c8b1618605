"""The foreground view of ``zskill up``: events and output lines prefixed by
skill and version, what the shutdown stopped, and a tap that never blocks
the daemon."""

from __future__ import annotations

import io
import time

from ipc import Event
from orchestrator._daemon.tap import Tap
from orchestrator.cli.foreground import ForegroundView, describe


def ev(seq: int, skill: str, kind: str, **data: object) -> Event:
    return Event(seq, time.time(), skill, kind, dict(data))


def test_the_view_prefixes_lines_and_says_what_the_shutdown_stopped() -> None:
    tap, out = Tap(), io.StringIO()
    view = ForegroundView(tap, out, color=False).start()
    tap.event(ev(1, "", "daemon.start", pid=7, config="/p/zskill.toml"))
    tap.event(ev(2, "echo", "spawn", instance="echo-1", pid=42))
    tap.line("echo", "out", "", 42, "loading")  # before its hello: no version yet
    tap.event(ev(3, "echo", "ready", version="1.0.0", pid=42))
    tap.event(ev(4, "echo", "rollout", op="start", step="done", status="ok"))
    tap.event(ev(5, "echo", "deployed", op="start", old_version="", new_version="1.0.0"))
    tap.line("echo", "err", "1.0.0", 42, "warning: x")
    tap.event(ev(6, "", "daemon.stop", pid=7))
    tap.event(ev(7, "echo", "exit", version="1.0.0", pid=42, how="exited with code 0",
                 expected=True))  # fmt: skip
    view.close()
    assert out.getvalue().splitlines() == [
        "zskilld  ● serving /p/zskill.toml (pid 7)",
        "echo     ● spawned (pid 42)",
        "echo     | loading",
        "echo 1.0.0  ● ready (pid 42)",
        "echo 1.0.0  ▲ started 1.0.0",
        "echo 1.0.0  | warning: x",
        "zskilld     ● shutting down: every skill drains, then stops",
        "echo 1.0.0  ● exited with code 0",
    ]
    assert view.stopped == ["echo 1.0.0 (pid 42)"]


def test_a_colour_per_skill_on_a_terminal() -> None:
    tap, out = Tap(), io.StringIO()
    view = ForegroundView(tap, out, color=True).start()
    tap.line("a", "out", "1", 1, "x")
    tap.line("b", "out", "1", 2, "y")
    view.close()
    first, second = out.getvalue().splitlines()
    assert first.startswith("\x1b[36ma 1") and second.startswith("\x1b[33mb 1")


def test_the_tap_drops_and_counts_rather_than_block() -> None:
    tap = Tap(max_items=3)
    for i in range(5):
        tap.line("echo", "out", "1", 1, str(i))  # nobody reads: it must not wait
    assert tap.dropped == 2
    out = io.StringIO()
    view = ForegroundView(tap, out, color=False).start()
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "zskilld  … 2 lines not shown (the terminal fell behind)"
    assert [line.split("| ")[1] for line in lines[1:]] == ["0", "1", "2"]


def test_describe_leaves_out_the_steps_that_went_well() -> None:
    assert describe("rollout", {"op": "upgrade", "step": "hello", "status": "ok"}) is None
    failed = {"op": "upgrade", "step": "hello", "status": "failed", "detail": "exited"}
    assert describe("rollout", failed) == "✗ upgrade failed at hello: exited"
    assert describe("rolled_back", {"reason": "exited"}) is None
    assert describe("deployed", {"op": "upgrade", "old_version": "1", "new_version": "2"}) == (
        "▲ upgrade 1 -> 2"
    )
    assert describe("backoff", {"delay_s": 0.5}) == "● backing off: next try in 0.5 s"


def test_reload_and_watch_events_in_a_few_words() -> None:
    assert describe("reload", {"ok": True, "summary": "1 added, 1 unchanged", "add": ["mail"]}) == (
        "● config reloaded: 1 added, 1 unchanged"
    )
    assert describe("reload", {"ok": False, "error": "env_file /x/.env: no such file"}) == (
        "✗ reload refused, nothing changed: env_file /x/.env: no such file"
    )
    assert describe("removed", {}) == "● removed from the config"
    assert describe("changed", {"files": ["main.py"], "count": 1}) == (
        "● changed: main.py; upgrading"
    )
    assert describe("changed", {"files": ["a.py", "b.py"], "count": 12}) == (
        "● changed: a.py, b.py and 10 more; upgrading"
    )
