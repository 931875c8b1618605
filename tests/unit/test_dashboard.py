"""``zskill dashboard``: frames rendered from fixed data to a plain 100-column
console, keys, selection, sparklines, and the feed against a fake client
(the live dashboard in a real terminal is in tests/integration/test_operator.py)."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ipc import DaemonUnavailable, Event
from orchestrator.cli.dashboard.app import Feed, FeedState, LogTail, Model
from orchestrator.cli.dashboard.keyboard import Keyboard, parse_keys
from orchestrator.cli.dashboard.view import View, event_text, natural_width, render, sparkline
from orchestrator.cli.logs import parse_record

T0 = 1_000_000_000.0  # 2001-09-09 01:46:40 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def text_of(renderable: Any, width: int = 100, height: int | None = None) -> list[str]:
    console = Console(width=width, height=height or 25, color_system=None, file=io.StringIO(),
                      record=True)  # fmt: skip
    console.print(renderable)
    return [line.rstrip() for line in console.export_text().splitlines()]


def row(name: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "state": "running", "version": "1.0.0", "pid": 4242, "uptime_s": 75,
        "restarts": 0, "in_flight": 0, "queued": 0, "cpu_percent": 1.5, "rss_bytes": 38_000_000,
        "calls_per_s": 0.0, "errors": 0, "error_rate": 0.0, "p50_ms": None, "p99_ms": None,
        "last_exit": None,
    }  # fmt: skip
    return base | kw


ROWS = [
    row("echo", version="2.0.0", pid=4243, in_flight=2, calls_per_s=3.25, p50_ms=0.9, p99_ms=4.2),
    row("slow", in_flight=4, queued=6, calls_per_s=0.5, p50_ms=1500, p99_ms=2000),
    row("mail", state="errored", pid=None, uptime_s=0, restarts=5, errors=3, rss_bytes=0,
        cpu_percent=0.0, last_exit="mail-7 (version 1.0.0) was killed by SIGKILL"),
]  # fmt: skip


def event(seq: int, skill: str, type_: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "time": T0 + seq, "skill": skill, "type": type_, "data": data}


EVENTS = [
    event(1, "echo", "spawn", instance="echo-2", pid=4243, source="/x"),
    event(2, "echo", "rollout", op="upgrade", step="hello", status="ok", elapsed_s=0.1),
    event(3, "echo", "deployed", op="upgrade", old_version="1.0.0", new_version="2.0.0"),
    event(4, "echo", "rolled_back", op="upgrade", old_version="2.0.0", new_version="9.9.9",
          reason="health check failed"),
    event(5, "mail", "errored", failures=5, last_exit="mail-7 was killed by SIGKILL"),
]  # fmt: skip


def log(line: str, stream: str = "out", version: str = "2.0.0") -> Any:
    rec = {"t": T0 + 0.5, "stream": stream, "version": version, "pid": 4243, "line": line}
    return parse_record(json.dumps(rec))


def view(**kw: Any) -> View:
    base: dict[str, Any] = {
        "run_dir": "/srv/agent/.zskill", "connected": True, "rows": ROWS, "selected": "echo",
        "history": {"echo": [0, 1, 2, 3, 4, 5, 6, 7], "slow": [1, 1]}, "events": EVENTS,
        "logs": [log("hello"), log("oops", "err")], "daemon_pid": 42, "now": T0,
    }  # fmt: skip
    return View(**(base | kw))


def test_frame_shows_rows_events_and_the_selected_skills_log() -> None:
    lines = text_of(render(view(), width=100, height=24), height=24)
    assert len(lines) == 24
    assert lines[:7] == [
        "zskill dashboard  /srv/agent/.zskill  ● connected (daemon 42)  01:46:40",
        "╭─ skills ─────────────────────────────────────────────────────────────────────────────────────────╮",  # noqa: E501
        "│   name state   version  pid uptime restarts   mem in-flight queued        calls/s   p99 errors   │",  # noqa: E501
        "│ ▸ echo running 2.0.0   4243  1m15s        0 36.2M         2      0   ▁▂▃▄▅▆▇█ 3.2 4.2ms      0   │",  # noqa: E501
        "│   slow running 1.0.0   4242  1m15s        0 36.2M         4      6         ██ 0.5 2.00s      0   │",  # noqa: E501
        "│   mail errored 1.0.0      -     0s        5    0B         0      0            0.0     -      3   │",  # noqa: E501
        "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    ]  # fmt: skip
    body = "\n".join(lines)
    # Upgrades are marked; the steps of a rollout that went well are not shown.
    assert "01:46:43 echo     ▲ upgraded 1.0.0 -> 2.0.0" in body
    assert "✗ upgrade rejected: health check failed (2.0.0 still serving)" in body
    assert "errored after 5 crashes" in body
    assert "hello" not in [ln for ln in lines if "rollout" in ln]
    assert "╭─ logs: echo ─" in body
    assert "│ 01:46:40.500 2.0.0 4243 out | hello" in body
    assert "│ 01:46:40.500 2.0.0 4243 err | oops" in body
    assert lines[-1].startswith(" ↑/↓ j/k select   q quit   3 skills, 2 running")


def test_wide_terminals_show_every_column() -> None:
    width = natural_width(view())
    lines = text_of(render(view(), width=width), width=width)
    assert lines[2].split() == ["│", "name", "state", "version", "pid", "uptime", "restarts",
                                "cpu", "mem", "in-flight", "queued", "calls/s", "p50", "p99",
                                "errors", "│"]  # fmt: skip


def test_narrow_terminals_drop_columns_never_the_name() -> None:
    lines = text_of(render(view(), width=60, height=20), width=60, height=20)
    assert lines[2].split() == ["│", "name", "state", "version", "pid", "in-flight", "queued",
                                "calls/s", "│"]  # fmt: skip
    assert lines[3].split()[1:5] == ["▸", "echo", "running", "2.0.0"]
    assert all(len(line) <= 60 for line in lines)


def test_disconnected_keeps_the_last_rows_and_says_so() -> None:
    lines = text_of(render(view(connected=False, down_for_s=3.4), width=100, height=24))
    assert "○ disconnected for 3 s; reconnecting" in lines[0]
    assert "echo" in lines[3]


def test_no_skills_and_no_data_yet() -> None:
    lines = text_of(render(view(rows=(), events=(), logs=(), selected=None), width=80, height=16),
                    width=80)  # fmt: skip
    body = "\n".join(lines)
    assert "no skills" in body and "no events yet" in body and "no output yet" in body
    assert len(lines) == 16


def test_many_skills_scroll_to_keep_the_selection_visible() -> None:
    rows = [row(f"s{i:02d}") for i in range(40)]
    lines = text_of(render(view(rows=rows, selected="s30"), width=100, height=24), height=24)
    assert len(lines) == 24
    names = [ln[4:7] for ln in lines[3:] if ln[4:5] == "s" and ln[5:7].isdigit()]
    assert names == [f"s{i}" for i in range(24, 37)]  # 13 rows fit, the selected in the middle
    assert "│ ▸ s30  running" in "\n".join(lines)


def test_sparkline() -> None:
    assert sparkline([], 4) == "    "
    assert sparkline([0, 0], 4) == "  ▁▁"
    assert sparkline([0, 1, 2, 4], 4) == "▁▃▅█"
    assert sparkline(list(range(20)), 4) == "▇▇██"  # the last ones, scaled to their maximum


def test_event_lines() -> None:
    def line(ev: dict[str, Any]) -> str:
        text = event_text(ev)
        assert text is not None
        return text.plain

    assert line(EVENTS[2]) == "01:46:43 echo     ▲ upgraded 1.0.0 -> 2.0.0"
    rollback = event(6, "echo", "deployed", op="rollback", old_version="2.0.0", new_version="1.0.0")
    assert line(rollback) == "01:46:46 echo     ▲ rolled back 2.0.0 -> 1.0.0"
    assert line(event(7, "echo", "deployed", op="start", new_version="1.0.0")).endswith(
        "started 1.0.0"
    )
    crash = event(8, "echo", "exit", version="1.0.0", pid=9, how="was killed by SIGKILL")
    assert line(crash).endswith("exit 1.0.0 pid 9: was killed by SIGKILL")
    tools = event(9, "echo", "tools_changed", added=["shout"], removed=[], changed=["say"])
    assert line(tools).endswith("tools +shout ~say")
    assert line(event(10, "", "daemon.start", pid=7)).endswith("daemon   daemon.start pid=7")
    assert event_text(EVENTS[1]) is None
    failed = event(11, "echo", "rollout", op="upgrade", step="health", status="failed",
                   detail="the hook returned false")  # fmt: skip
    assert line(failed).endswith("upgrade failed at health: the hook returned false")


def test_keys() -> None:
    assert parse_keys(b"jk\x1b[A\x1b[Bq") == ["down", "up", "up", "down", "quit"]
    assert parse_keys(b"\x1bOA\x1bOB\x1b[5~\x1b[6~gG") == [
        "up", "down", "pageup", "pagedown", "home", "end"
    ]  # fmt: skip
    assert parse_keys(b"xyz\x1b") == []
    assert not Keyboard(io.StringIO()).interactive  # no terminal: no keys, no termios


def test_model_selection_follows_keys_and_rows() -> None:
    m = Model()
    m.apply(FeedState(1, True, tuple(ROWS)), now=0.0)
    assert m.selected == "echo"
    assert m.move("down") and m.selected == "slow"
    assert m.move("end") and m.selected == "mail"
    assert not m.move("down")
    assert m.move("home") and m.selected == "echo"
    assert not m.move("up")
    # The selected skill leaves the config: the selection falls back to the first row.
    m.selected = "slow"
    m.apply(FeedState(2, True, (ROWS[0], ROWS[2])), now=1.0)
    assert m.selected == "echo"


def test_model_keeps_one_sparkline_point_per_interval() -> None:
    m = Model()
    for i, rate in enumerate([1.0, 2.0, 3.0, 4.0]):
        m.apply(FeedState(i + 1, True, (row("echo", calls_per_s=rate),)), now=i * 1.5)
    assert list(m.history["echo"]) == [1.0, 3.0]  # at 0 s and 3 s (every SPARK_EVERY_S)
    m.apply(FeedState(9, False, (row("echo", calls_per_s=9.0),)), now=100.0)
    assert list(m.history["echo"]) == [1.0, 3.0]  # nothing new while disconnected


class FakeStream:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def next(self, timeout: float | None = None) -> Event | None:
        return self.events.pop(0) if self.events else None

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self) -> None:
        self.down = False
        self.pid = 100
        self.history = [EVENTS[0], EVENTS[2]]
        self.rows = [ROWS[0]]
        self.stream = FakeStream()
        self.requests: list[str] = []

    def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        if self.down:
            raise DaemonUnavailable("no zskill daemon is running")
        return {"pid": self.pid, "started_at": float(self.pid)}

    def request(self, op: str, args: Any = None, *, timeout: float | None = None) -> Any:
        self.requests.append(op)
        assert timeout is not None  # a vanished daemon must not hang the feed
        return self.history if op == "events" else self.rows

    def subscribe(self, skill: str | None = None) -> FakeStream:
        return self.stream


def test_feed_rides_through_a_daemon_restart() -> None:
    client = FakeClient()
    feed = Feed(client, interval_s=0.1)  # type: ignore[arg-type]
    feed._stream = client.stream  # type: ignore[assignment]  # as the feed thread would
    feed.poll_once()
    s = feed.latest
    assert s.connected and s.daemon_pid == 100 and [e["seq"] for e in s.events] == [1, 3]
    # Live events come from the stream; one already in the history is not repeated.
    client.stream.events = [Event(3, T0, "echo", "deployed", {}), Event(6, T0, "echo", "ready", {})]
    feed.poll_once()
    assert [e["seq"] for e in feed.latest.events] == [1, 3, 6]
    assert client.requests.count("events") == 1  # history only for a daemon not seen before

    client.down = True
    feed.poll_once()
    s = feed.latest
    assert not s.connected and s.down_since is not None
    assert s.rows == (ROWS[0],) and len(s.events) == 3  # the last known, kept on screen

    client.down, client.pid = False, 200
    client.history = [*client.history, event(7, "", "daemon.start", pid=200)]
    feed.poll_once()
    s = feed.latest
    assert s.connected and s.daemon_pid == 200 and s.down_since is None
    assert [e["seq"] for e in s.events] == [1, 3, 7]  # the new daemon's history


@pytest.fixture
def run_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="zs-dash-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_log_tail_follows_the_selected_skill(run_dir: Path) -> None:
    logs = run_dir / "logs"
    logs.mkdir()
    (logs / "echo.log").write_text(json.dumps({"t": T0, "stream": "out", "version": "1",
                                               "pid": 1, "line": "first"}) + "\n")  # fmt: skip
    tail = LogTail(run_dir)
    try:
        assert tail.show("echo")
        assert [r.line for r in tail.records] == ["first"]
        assert not tail.poll()
        with open(logs / "echo.log", "a") as f:
            f.write(json.dumps({"t": T0, "stream": "err", "version": "2", "pid": 2,
                                "line": "second"}) + "\n")  # fmt: skip
        assert tail.poll()
        assert [(r.line, r.version) for r in tail.records] == [("first", "1"), ("second", "2")]
        assert not tail.show("echo")
        assert tail.show("slow") and list(tail.records) == []  # no log yet: empty, no error
    finally:
        tail.close()
