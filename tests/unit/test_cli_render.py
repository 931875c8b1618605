"""Rich renderables of the CLI, printed to a plain 100-column console."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from rich.console import Console

from orchestrator.cli.render import (
    ProgressPrinter,
    list_notes,
    list_table,
    releases_table,
    step_line,
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def plain_console(width: int = 100) -> Console:
    return Console(width=width, color_system=None, record=True, file=io.StringIO())


def render(obj: Any, width: int = 100) -> str:
    console = plain_console(width)
    console.print(obj)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def status(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "echo",
        "state": "running",
        "version": "1.0.0",
        "pid": 4242,
        "uptime_s": 252.4,
        "restarts": 0,
        "in_flight": 2,
        "queued": 0,
        "concurrency": 8,
        "tools": ["say"],
        "last_exit": None,
        "instances": [],
    }
    return base | kw


def test_list_table_core_columns() -> None:
    rows = [
        status(),
        status(name="mail", state="stopped", version=None, pid=None, uptime_s=None, in_flight=0),
        status(name="search", state="backoff", version="3.1.0", pid=77, uptime_s=7384, restarts=4),
    ]
    assert render(list_table(rows, width=100)) == "\n".join(
        [
            "name    state    version   pid  uptime  restarts  in-flight  queued",
            "echo    running  1.0.0    4242   4m12s         0          2       0",
            "mail    stopped  -           -       -         0          0       0",
            "search  backoff  3.1.0      77   2h03m         4          2       0",
        ]
    )


def metrics_rows() -> list[dict[str, Any]]:
    return [
        status(cpu_percent=12.5, rss_bytes=47_396_044, calls_per_s=3.25, p50_ms=1.2, p99_ms=48,
               errors=1),
        status(name="search", state="errored", cpu_percent=None, rss_bytes=None, calls_per_s=1234,
               p50_ms=12, p99_ms=1250, errors=0),
    ]  # fmt: skip


def test_list_table_shows_metrics_when_reported_and_fits_100_columns() -> None:
    assert render(list_table(metrics_rows(), width=100)) == "\n".join(
        [
            "name   state   version  pid uptime restarts   cpu   mem in-flight queued calls/s   p50   p99 errors",  # noqa: E501
            "echo   running 1.0.0   4242  4m12s        0 12.5% 45.2M         2      0     3.2 1.2ms  48ms      1",  # noqa: E501
            "search errored 1.0.0   4242  4m12s        0     -     -         2      0    1234  12ms 1.25s      0",  # noqa: E501
        ]
    )  # fmt: skip
    wide = render(list_table(metrics_rows(), width=200), width=200).splitlines()
    assert wide[0].startswith("name    state    version   pid  uptime  restarts    cpu    mem  ")
    assert "cpu" not in render(list_table([status()]))


def test_list_table_leaves_out_the_least_telling_columns_when_narrow() -> None:
    narrow = render(list_table(metrics_rows(), width=80), width=80).splitlines()
    assert narrow[0].split() == ["name", "state", "version", "pid", "uptime", "restarts", "mem",
                                 "in-flight", "queued", "calls/s", "p99"]  # fmt: skip
    assert narrow[2].split()[:2] == ["search", "errored"]  # names and states are never cut
    assert all(len(line) <= 80 for line in narrow)
    tiny = render(list_table(metrics_rows(), width=50), width=50).splitlines()
    assert tiny[0].split() == ["name", "state", "version", "pid", "in-flight", "queued"]


def test_metric_columns_show_before_the_first_call() -> None:
    """A reported metric with no value yet (p50 before any call) keeps its column."""
    rows = [status(cpu_percent=0.0, rss_bytes=1024, calls_per_s=0.0, p50_ms=None, p99_ms=None,
                   errors=0)]  # fmt: skip
    header = render(list_table(rows, width=200), width=200).splitlines()[0].split()
    assert header[-4:] == ["calls/s", "p50", "p99", "errors"]


def test_list_notes_say_why_a_skill_is_down() -> None:
    rows = [
        status(),
        status(name="search", state="errored", last_exit="search-7 (version 3.1.0) was killed "
               "by SIGKILL"),
        status(name="mail", state="backoff", last_exit="mail-2 (version 1.0.0) exited with code 1"),
        status(name="old", state="running", last_exit="old-1 exited with code 1"),
        status(name="batch", state="running", cancelling=2),
    ]  # fmt: skip
    assert [render(n, width=200) for n in list_notes(rows)] == [
        "search: errored; last exit: search-7 (version 3.1.0) was killed by SIGKILL (`zskill "
        "start search` clears it)",
        "mail: backoff; last exit: mail-2 (version 1.0.0) exited with code 1",
        "batch: 2 cancelled calls still run, holding their slots (past cancel_grace_s the "
        "process is replaced)",
    ]


def test_list_table_state_colours() -> None:
    console = Console(width=100, color_system="standard", force_terminal=True, file=io.StringIO(),
                      record=True)  # fmt: skip
    console.print(list_table([status(), status(name="bad", state="errored")]))
    html = console.export_text(styles=True)
    assert "\x1b[32mrunning" in html
    assert "\x1b[31merrored" in html


def test_step_lines() -> None:
    ok = {"step": "health", "status": "ok", "elapsed_s": 0.012, "detail": ""}
    failed = {"step": "health", "status": "failed", "elapsed_s": 5.0,
              "detail": "health hook returned false"}  # fmt: skip
    assert render(step_line(ok)) == "✓ health     12 ms"
    assert render(step_line(failed)) == "✗ health     5.0 s  health hook returned false"
    assert render(step_line(failed, unicode=False)) == (
        "FAIL health     5.0 s  health hook returned false"
    )


def test_progress_printer_prints_finished_steps() -> None:
    console = plain_console()
    printer = ProgressPrinter(console)
    for step, elapsed in [("spawn", 0.031), ("hello", 0.2), ("health", 0.012), ("switch", 0.0004),
                          ("drain", 1.5), ("done", 0.0)]:  # fmt: skip
        printer({"step": step, "status": "started", "elapsed_s": 0.0, "detail": ""})
        printer({"step": step, "status": "ok", "elapsed_s": elapsed, "detail": ""})
    printer.close()
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines())
    assert text == "\n".join(
        [
            "✓ spawn      31 ms",
            "✓ hello     200 ms",
            "✓ health     12 ms",
            "✓ switch      0 ms",
            "✓ drain      1.5 s",
            "✓ done        0 ms",
        ]
    )
    assert printer.printed == 6


def test_progress_printer_replays_report_when_nothing_came_live() -> None:
    console = plain_console()
    printer = ProgressPrinter(console)
    printer.replay(
        {"steps": [{"step": "spawn", "status": "started", "elapsed_s": 0},
                   {"step": "spawn", "status": "ok", "elapsed_s": 0.5},
                   {"step": "rollback", "status": "failed", "elapsed_s": 1, "detail": "x"}]}
    )  # fmt: skip
    assert console.export_text().splitlines() == ["✓ spawn     500 ms", "✗ rollback   1.0 s  x"]


def releases() -> list[dict[str, Any]]:
    return [
        {"id": "r3", "version": "1.1.0", "source": "/src/echo-next", "created_at": 86400.0,
         "current": True, "tools": ["say", "shout", "a", "b", "c"], "digest": "0123456789abcdef"},
        {"id": "r2", "version": "1.0.0", "source": "skills/echo", "created_at": 3600.0,
         "current": False, "tools": ["say"], "note": "first"},
    ]  # fmt: skip


def test_releases_table() -> None:
    assert render(releases_table(releases(), width=100)) == "\n".join(
        [
            "   id  version  created              source          tools              digest        note",  # noqa: E501
            "*  r3  1.1.0    1970-01-02 00:00:00  /src/echo-next  say, shout, a, +2  0123456789ab  -",  # noqa: E501
            "   r2  1.0.0    1970-01-01 01:00:00  skills/echo     say                -             first",  # noqa: E501
        ]
    )  # fmt: skip
    assert render(releases_table([{"id": "a"}])) == "id\na"


def test_releases_table_leaves_out_extra_columns_that_do_not_fit() -> None:
    narrow = render(releases_table(releases(), width=60), width=60).splitlines()
    assert narrow[0].split() == ["id", "version", "created", "source"]
    assert narrow[1].split()[:3] == ["*", "r3", "1.1.0"]


def test_list_table_shows_the_longest_call_only_while_one_runs() -> None:
    idle = [status(longest_call=None)]
    assert "longest" not in render(list_table(idle, width=100))
    busy = [
        status(
            longest_call={"call_id": 7, "tool": "crawl", "instance": "echo-1", "running_s": 83.2}
        ),
        status(name="mail", longest_call=None),
    ]
    lines = render(list_table(busy, width=100)).splitlines()
    assert lines[0].split()[-1] == "longest"
    assert lines[1].split()[-2:] == ["1m23s", "crawl"]
    assert lines[2].split()[-1] == "-"
