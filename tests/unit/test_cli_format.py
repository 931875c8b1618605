"""The CLI's plain-text formats: human units, one-line summaries, events, JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from orchestrator.cli import format as fmt


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (0.7, "0s"),
        (3, "3s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (252, "4m12s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (2 * 3600 + 3 * 60 + 59, "2h03m"),
        (86399, "23h59m"),
        (86400 + 2 * 3600, "1d02h"),
        (40 * 86400, "40d00h"),
        (-5, "0s"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert fmt.human_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.0004, "0 ms"), (0.012, "12 ms"), (0.9994, "999 ms"), (5.0, "5.0 s"),
     (42.25, "42.2 s"), (125, "2m05s")],
)  # fmt: skip
def test_human_elapsed(seconds: float | None, text: str) -> None:
    assert fmt.human_elapsed(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "-"), (0, "0B"), (512, "512B"), (1536, "1.5K"), (47_396_044, "45.2M"),
     (120 * 1024**2, "120M"), (3 * 1024**3, "3.0G"), (5 * 1024**5, "5120T")],
)  # fmt: skip
def test_human_bytes(n: int | None, text: str) -> None:
    assert fmt.human_bytes(n) == text


def test_human_ms_percent_rate() -> None:
    assert [fmt.human_ms(x) for x in (None, 0.42, 12.4, 999, 1250)] == [
        "-", "0.4ms", "12ms", "999ms", "1.25s"
    ]  # fmt: skip
    assert [fmt.human_percent(x) for x in (None, 0, 12.345, 250.4)] == [
        "-", "0.0%", "12.3%", "250%"
    ]  # fmt: skip
    assert [fmt.human_rate(x) for x in (None, 3.25, 1234.5)] == ["-", "3.2", "1234"]


def test_clock_ms_rounds_into_the_next_second() -> None:
    assert fmt.clock_ms(0.0) == "00:00:00.000"
    assert fmt.clock_ms(3723.0456) == "01:02:03.046"
    assert fmt.clock_ms(59.9996) == "00:01:00.000"


def test_local_time_keeps_strings() -> None:
    assert fmt.local_time(86400.5) == "1970-01-02 00:00:00"
    assert fmt.local_time("2024-05-01T10:00:00Z") == "2024-05-01T10:00:00Z"
    assert fmt.local_time(None) == "-"


def test_status_lines() -> None:
    running = {"name": "echo", "state": "running", "version": "1.0.0", "pid": 42}
    assert fmt.status_line("restarted", "echo", running, 0.314) == (
        "restarted echo in 0.31 s: running 1.0.0 (pid 42)"
    )
    stopped = {"name": "echo", "state": "stopped", "version": "1.0.0", "pid": None}
    assert fmt.status_line("stopped", "echo", stopped, 1.2) == "stopped echo in 1.20 s"
    assert fmt.status_line("started", "echo", {"state": "backoff"}, 5) == (
        "started echo in 5.00 s: backoff"
    )


def test_upgrade_summary() -> None:
    report = {"skill": "echo", "old_version": "1.0.0", "new_version": "1.1.0", "duration_s": 0.421}
    assert fmt.upgrade_summary("echo", report) == "echo 1.0.0 -> 1.1.0 in 0.42 s"
    report |= {"release": "r3", "tools_changed": True}
    assert fmt.upgrade_summary("echo", report) == (
        "echo 1.0.0 -> 1.1.0 in 0.42 s (release r3); tools changed"
    )
    assert fmt.upgrade_summary("echo", {}) == "echo - -> -"
    # A same-version upgrade says so (a rollback to an equal version does not need to).
    same = {"skill": "echo", "op": "upgrade", "old_version": "1.0.0", "new_version": "1.0.0"}
    assert fmt.upgrade_summary("echo", same) == (
        "echo 1.0.0 -> 1.0.0; the same version (1.0.0): bump it in the skill to tell releases apart"
    )
    assert fmt.upgrade_summary("echo", same | {"op": "rollback"}) == "echo 1.0.0 -> 1.0.0"


def test_event_line() -> None:
    event = {
        "seq": 7,
        "time": 3723.5,
        "skill": "echo",
        "type": "upgraded",
        "data": {
            "old": "1.0.0",
            "new": "1.1.0",
            "reason": "health hook returned false",
            "n": 2,
            "detail": "",
            "none": None,
            "zero": 0,
        },
    }
    assert fmt.event_line(event) == (
        "1970-01-01 01:02:03.500 echo upgraded old=1.0.0 new=1.1.0 "
        'reason="health hook returned false" n=2 zero=0'
    )
    assert fmt.event_line({"time": 0, "skill": "", "type": "daemon_started", "data": {}}) == (
        "1970-01-01 00:00:00.000 - daemon_started"
    )


def test_to_json_carries_bytes_and_tuples() -> None:
    out = fmt.to_json({"text": b"hi", "blob": b"\xff\x00", "pair": (1, 2), "x": object()})
    data = json.loads(out)
    assert data["text"] == "hi"
    assert data["blob"] == "/wA="
    assert data["pair"] == [1, 2]
    assert data["x"].startswith("<object object")
    assert fmt.to_json({"é": 1}) == '{"é": 1}'


def test_reload_line_says_what_happened_to_each_skill() -> None:
    from orchestrator.cli.format import reload_line

    base = {"ok": True, "keys": [], "version": "1.0.0", "pid": 42}
    assert reload_line({**base, "skill": "clock", "action": "keep", "detail": "unchanged"}) == (
        "  = clock        unchanged: version 1.0.0, pid 42"
    )
    assert reload_line(
        {**base, "skill": "echo", "action": "restart", "keys": ["env_file"], "detail": "restarted"}
    ) == ("  ~ echo         restarted (env_file): version 1.0.0, pid 42")
    removed = {"skill": "slow", "action": "remove", "ok": True, "detail": "drained and stopped"}
    assert reload_line(removed) == "  - slow         drained and stopped"
    failed = {
        **base,
        "skill": "echo",
        "action": "restart",
        "ok": False,
        "keys": ["command"],
        "detail": "not restarted",
        "why": "the new process exited with code 1 before serving (step hello)",
    }
    assert reload_line(failed) == (
        "  ! echo         not restarted (command): the new process exited with code 1 before "
        "serving (step hello): version 1.0.0, pid 42"
    )


def test_startup_report_says_why_a_skill_does_not_serve() -> None:
    from orchestrator.cli.startup import Startup, report_lines

    def st(name: str, state: str, **more: Any) -> Any:
        return {"name": name, "state": state, "version": "1.0.0", "pid": 42, **more}

    startup = Startup(
        [
            st("echo", "running"),
            st("syn", "backoff", last_exit="start failed: exited (SyntaxError: x)",
               last_stderr=["  File 'main.py'", "SyntaxError: x"]),
            st("slow", "starting"),
            st("off", "stopped"),
        ],
        wanted=frozenset({"echo", "syn", "slow"}),
        waited_s=15.2,
        timed_out=True,
    )  # fmt: skip
    assert report_lines(startup) == [
        "echo  running   1.0.0 (pid 42)",
        "syn   backoff   start failed: exited (SyntaxError: x)",
        "      |   File 'main.py'",
        "      | SyntaxError: x",
        "slow  starting  not ready after 15 s",
        "off   stopped   (autostart = false)",
    ]
    assert [s["name"] for s in startup.failed()] == ["syn", "slow"]


def test_stderr_lines_of_a_failure() -> None:
    assert fmt.stderr_lines({"stderr_tail": ["Traceback:", "E: x"]}) == [
        "the new process's last stderr lines:",
        "  | Traceback:",
        "  | E: x",
    ]
    assert fmt.stderr_lines({}) == fmt.stderr_lines({"stderr_tail": []}) == []
