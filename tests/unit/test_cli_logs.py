"""``zskill logs``: parsing, formatting, history across rotated files, and
following a file that a writer appends to, rotates and truncates."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator._daemon.logfiles import LogFile, StreamCapture
from orchestrator.cli import logs as cl


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def run_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="zs-logs-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def record(i: int, stream: str = "out", t: float | None = None, version: str = "1.0.0") -> str:
    return json.dumps(
        {"t": 1000.0 + i if t is None else t, "stream": stream, "version": version, "pid": 42,
         "line": f"line {i}"}
    )  # fmt: skip


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def collect(follower: cl.LogFollower, want: int, *, timeout_s: float = 10.0) -> list[cl.LogRecord]:
    """Follow until ``want`` records came, with a deadline."""
    deadline = time.monotonic() + timeout_s
    out: list[cl.LogRecord] = []

    def stop() -> bool:
        return len(out) >= want or time.monotonic() > deadline

    for rec in cl.follow(follower, cl.record_filter(), poll_s=0.01, stop=stop):
        out.append(rec)
    return out


# --- pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("45", 45),
     ("1.5h", 5400), ("500ms", 0.5), (" 2H ", 7200), ("0s", 0)],
)  # fmt: skip
def test_parse_since(text: str, seconds: float) -> None:
    assert cl.parse_since(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "m10", "10m5", "-5", "1h 30m"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cl.parse_since(text)


# 2026-11-30 12:00:00 UTC (the tests run in TZ=UTC)
NOON = 1796040000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10m", NOON - 600), ("10:30", NOON - 5400), ("9:05", NOON - 2 * 3600 - 55 * 60),
     ("10:30:15", NOON - 5385), ("23:00", NOON - 13 * 3600),  # still to come today: yesterday's
     ("2026-11-30", NOON - 12 * 3600), ("2026-11-30 10:30", NOON - 5400),
     ("2026-11-30 10:30:15", NOON - 5385), ("2026-11-30T10:30:00", NOON - 5400),
     ("2026-11-30T11:30:00+01:00", NOON - 5400)],
)  # fmt: skip
def test_since_takes_durations_clock_times_and_dates(text: str, expected: float) -> None:
    assert cl.parse_since_time(text, now=NOON) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "ten", "25:00", "10:7", "2026-13-01", "yesterday"])
def test_since_rejects_what_is_neither(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration, clock time or date"):
        cl.parse_since_time(text, now=NOON)


def test_format_record() -> None:
    rec = cl.parse_record(
        '{"t": 3723.0456, "stream": "err", "version": "1.1.0", "pid": 4242, "line": "boom"}'
    )
    # Lines carry the date (a log spans days); the dashboard's narrow panel leaves it out.
    assert cl.format_record(rec) == "1970-01-01 01:02:03.046 1.1.0 4242 err | boom"
    assert cl.format_record(rec, date=False) == "01:02:03.046 1.1.0 4242 err | boom"
    assert cl.format_record(rec, color=True) == (
        "\x1b[31m1970-01-01 01:02:03.046 1.1.0 4242 err | boom\x1b[0m"
    )
    out = cl.parse_record(record(1))
    assert cl.format_record(out, color=True) == "1970-01-01 00:16:41.000 1.0.0 42 out | line 1"


def test_parse_record_keeps_text_that_is_not_a_record() -> None:
    rec = cl.parse_record("not json at all")
    assert (rec.line, rec.stream, rec.t) == ("not json at all", "out", None)
    assert cl.format_record(rec) == "---------- --:--:--.--- - - out | not json at all"
    assert json.loads(rec.raw) == {"line": "not json at all"}
    assert cl.parse_record("[1, 2]").line == "[1, 2]"


def test_record_filter() -> None:
    out, err, old = (cl.parse_record(r) for r in (record(5), record(6, "err"), record(1, "err")))
    assert [r.line for r in (out, err, old) if cl.record_filter(err_only=True)(r)] == [
        "line 6",
        "line 1",
    ]
    keep = cl.record_filter(since_t=1003.0)
    assert [r.line for r in (out, err, old) if keep(r)] == ["line 5", "line 6"]


# --- history ----------------------------------------------------------------------


def test_history_reads_rotated_files_oldest_first(run_dir: Path) -> None:
    path = cl.log_path(run_dir, "echo")
    write_lines(path.with_name("echo.log.2"), [record(i) for i in range(0, 3)])
    write_lines(path.with_name("echo.log.1"), [record(i) for i in range(3, 6)])
    write_lines(path, [record(i) for i in range(6, 8)])
    (path.parent / "echo.log.bak").write_text(record(99) + "\n")  # not a rotation
    assert cl.rotated_files(path) == [path.with_name("echo.log.1"), path.with_name("echo.log.2")]

    def lines(n: int, keep: cl.Keep | None = None) -> list[str]:
        keep = keep or cl.record_filter()
        return [r.line for r in cl.history(cl.LogFollower(path), n, keep)]

    assert lines(2) == ["line 6", "line 7"]
    assert lines(4) == ["line 4", "line 5", "line 6", "line 7"]
    assert lines(50) == [f"line {i}" for i in range(8)]
    assert lines(0) == []
    assert lines(3, cl.record_filter(since_t=1004.0)) == ["line 5", "line 6", "line 7"]
    assert lines(50, cl.record_filter(since_t=1004.0)) == [f"line {i}" for i in range(4, 8)]


def test_history_of_missing_log_is_empty(run_dir: Path) -> None:
    assert cl.history(cl.LogFollower(cl.log_path(run_dir, "nope")), 10, cl.record_filter()) == []


def test_history_skips_blank_lines_and_filters_err(run_dir: Path) -> None:
    path = cl.log_path(run_dir, "echo")
    write_lines(path, [record(1), "", record(2, "err"), "  ", record(3)])
    recs = cl.history(cl.LogFollower(path), 10, cl.record_filter(err_only=True))
    assert [r.line for r in recs] == ["line 2"]


# --- follow -----------------------------------------------------------------------


def test_follow_resumes_where_history_ends(run_dir: Path) -> None:
    path = cl.log_path(run_dir, "echo")
    write_lines(path, [record(i) for i in range(3)])
    follower = cl.LogFollower(path)
    try:
        assert [r.line for r in cl.history(follower, 2, cl.record_filter())] == ["line 1", "line 2"]
        with open(path, "a", encoding="utf-8") as f:
            f.write(record(3) + "\n" + record(4)[:10])  # the second line is still being written
            f.flush()
            got = collect(follower, 1)
            assert [r.line for r in got] == ["line 3"]
            f.write(record(4)[10:] + "\n")
        assert [r.line for r in collect(follower, 1)] == ["line 4"]
    finally:
        follower.close()


def test_follow_waits_for_the_file_to_appear(run_dir: Path) -> None:
    path = cl.log_path(run_dir, "late")
    follower = cl.LogFollower(path)
    try:
        assert cl.history(follower, 10, cl.record_filter()) == []
        write_lines(path, [record(1)])
        assert [r.line for r in collect(follower, 1)] == ["line 1"]
    finally:
        follower.close()


def test_follow_survives_truncation(run_dir: Path) -> None:
    path = cl.log_path(run_dir, "echo")
    write_lines(path, [record(i) for i in range(5)])
    follower = cl.LogFollower(path)
    try:
        assert len(cl.history(follower, 50, cl.record_filter())) == 5
        with open(path, "w", encoding="utf-8") as f:  # truncate in place, same inode
            f.write(record(9) + "\n")
        assert [r.line for r in collect(follower, 1)] == ["line 9"]
    finally:
        follower.close()


def test_follow_across_rotations_with_a_concurrent_writer(run_dir: Path) -> None:
    """The daemon's own LogFile writes (and rotates every few lines) while we
    follow: every line arrives once, in order, across versions."""
    path = cl.log_path(run_dir, "echo")
    log = LogFile(path, max_bytes=600, keep=3)
    old = StreamCapture(log, "out", pid=1, version="1.0.0")
    old.feed(b"before-0\nbefore-1\n")
    follower = cl.LogFollower(path)
    total = 60
    try:
        history = cl.history(follower, 50, cl.record_filter())
        assert [r.line for r in history] == ["before-0", "before-1"]

        def write() -> None:
            new = StreamCapture(log, "err", pid=2, version="1.1.0")
            for i in range(total):
                (old if i < total // 2 else new).feed(f"msg-{i}\n".encode())
                time.sleep(0.002)  # pacing the writer, not synchronisation

        writer = threading.Thread(target=write)
        writer.start()
        got = collect(follower, total)
        writer.join(timeout=10)
        assert [r.line for r in got] == [f"msg-{i}" for i in range(total)]
        assert {r.version for r in got} == {"1.0.0", "1.1.0"}
        assert cl.rotated_files(path), "the writer should have rotated"
    finally:
        follower.close()
        log.close()


def test_follow_drains_the_old_file_after_a_rotation(run_dir: Path) -> None:
    """Lines written to the old file before the rename are not lost, even when
    the follower notices the new file only afterwards."""
    path = cl.log_path(run_dir, "echo")
    write_lines(path, [record(0)])
    follower = cl.LogFollower(path)
    try:
        assert len(cl.history(follower, 10, cl.record_filter())) == 1
        with open(path, "a", encoding="utf-8") as f:
            f.write(record(1) + "\n")
        os.replace(path, path.with_name("echo.log.1"))
        write_lines(path, [record(2)])
        assert [r.line for r in collect(follower, 2)] == ["line 1", "line 2"]
    finally:
        follower.close()


def test_follow_stops_when_asked(run_dir: Path) -> None:
    follower = cl.LogFollower(cl.log_path(run_dir, "echo"))
    calls: list[float] = []

    def stop() -> bool:
        calls.append(time.monotonic())
        return len(calls) > 3

    assert list(cl.follow(follower, cl.record_filter(), poll_s=0.001, stop=stop)) == []
    follower.close()


def test_a_capture_keeps_the_last_stderr_lines_bounded(run_dir: Path) -> None:
    """What a failed start shows comes from memory, not from reading the log back."""
    from orchestrator._daemon.logfiles import TAIL_LINE_CHARS, TAIL_LINES, new_tail

    log = LogFile(cl.log_path(run_dir, "echo"), max_bytes=1 << 20, keep=1)
    tail = new_tail()
    cap = StreamCapture(log, "err", pid=1, version="", tail=tail)
    try:
        cap.feed(b"".join(f"line {i}\n".encode() for i in range(TAIL_LINES + 5)))
        cap.feed(b"x" * 1000 + b"\nSyntaxError: x")
        cap.flush()
        assert len(tail) == TAIL_LINES
        assert tail[0] == "line 7" and tail[-1] == "SyntaxError: x"
        assert len(tail[-2]) == TAIL_LINE_CHARS and tail[-2].endswith("...")
    finally:
        log.close()
