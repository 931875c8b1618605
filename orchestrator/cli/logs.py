"""``zskill logs``: read a skill's captured output straight from the run dir.

The daemon writes ``logs/<skill>.log`` as JSON lines ``{"t", "stream",
"version", "pid", "line"}`` and rotates by renaming it to ``.log.1`` (older
ones to ``.log.2``, ...) and starting a new file. Every version of a skill
writes to the same file, so following it spans upgrades. Reading needs no
daemon.

    history:  .log.N ... .log.2  .log.1  .log        (oldest -> newest)
    follow:   keep the .log file open; on EOF, check whether the path now
              names another file (rotated: drain the old one, reopen) or a
              shorter one (truncated: start over)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .._rundir import RunDir
from .format import clock_ms, local_time_ms

RED = "\x1b[31m"
RESET = "\x1b[0m"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One captured line. ``raw`` is the JSON line as stored (for ``--json``)."""

    t: float | None
    stream: str
    version: str
    pid: int | None
    line: str
    raw: str

    @property
    def is_err(self) -> bool:
        return self.stream == "err"


def parse_record(raw: str) -> LogRecord:
    """A stored line as a record; a line that is not a record is kept as text."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return LogRecord(None, "out", "-", None, raw, json.dumps({"line": raw}))
    t = data.get("t")
    pid = data.get("pid")
    return LogRecord(
        t=float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None,
        stream=str(data.get("stream", "out")),
        version=str(data.get("version", "-")),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        line=str(data.get("line", "")),
        raw=raw,
    )


def format_record(rec: LogRecord, *, color: bool = False, date: bool = True) -> str:
    """``2026-11-30 14:03:07.123 1.0.0 4242 out | hello`` (without the date
    when ``date`` is false); stderr lines red when ``color``."""
    if rec.t is None:
        when = "---------- --:--:--.---" if date else "--:--:--.---"
    else:
        when = local_time_ms(rec.t) if date else clock_ms(rec.t)
    pid = rec.pid if rec.pid is not None else "-"
    text = f"{when} {rec.version} {pid} {rec.stream} | {rec.line}"
    return f"{RED}{text}{RESET}" if color and rec.is_err else text


_SINCE_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str) -> float:
    """A duration like ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m`` (a bare
    number means seconds) in seconds. Raises ValueError."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    try:
        seconds = float(s)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _SINCE_PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(s):
            raise ValueError(
                f"not a duration: {text!r} (use e.g. 30s, 10m, 2h, 1d, 1h30m)"
            ) from None
    if seconds < 0:
        raise ValueError(f"negative duration: {text!r}")
    return seconds


_CLOCK = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_since_time(text: str, now: float | None = None) -> float:
    """The epoch time ``--since`` means: a duration back from ``now``
    (``10m``, see :func:`parse_since`), a clock time of today in local time
    (``10:30``, ``10:30:15``; yesterday's if today's is still to come), a
    date (``2026-11-30``, midnight) or a date and time (``2026-11-30 10:30``,
    ISO ``2026-11-30T10:30:00+00:00``). Raises ValueError."""
    import datetime as dt

    now = time.time() if now is None else now
    s = text.strip()
    try:
        return now - parse_since(s)
    except ValueError as exc:
        try:
            if _CLOCK.fullmatch(s):
                clock = dt.time.fromisoformat(s if len(s.split(":")[0]) == 2 else "0" + s)
                today = dt.datetime.fromtimestamp(now).date()
                at = dt.datetime.combine(today, clock).timestamp()
                return at if at <= now else at - 86400.0  # 23:00 asked at 01:00: last night
            for fmt in _DATE_FORMATS:
                with contextlib.suppress(ValueError):
                    return dt.datetime.strptime(s, fmt).timestamp()
            return dt.datetime.fromisoformat(s).timestamp()  # naive: local time
        except ValueError:
            raise ValueError(
                f"not a duration, clock time or date: {text!r} "
                "(use e.g. 10m, 1h30m, 10:30, 2026-11-30, '2026-11-30 10:30')"
            ) from exc


def log_path(run_dir: Path, skill: str) -> Path:
    return RunDir(run_dir).skill_log(skill)


def rotated_files(path: Path) -> list[Path]:
    """``path.1``, ``path.2``, ... that exist, newest first."""
    found: list[tuple[int, Path]] = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


class LogFollower:
    """Reads complete lines from a file that grows, is rotated or truncated.

    :meth:`poll` returns the lines appended since the last call (the whole
    file on the first). A line still being written stays buffered until its
    newline comes, or until :meth:`flush` (for a reader that stops now).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        self._ino: tuple[int, int] | None = None
        self._pos = 0
        self._buf = b""

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 -- held across polls
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        self._f, self._ino, self._pos, self._buf = f, (st.st_dev, st.st_ino), 0, b""
        return True

    def _drain(self) -> list[str]:
        assert self._f is not None
        self._f.seek(self._pos)
        data = self._f.read()
        self._pos += len(data)
        if not data:
            return []
        *lines, self._buf = (self._buf + data).split(b"\n")
        return [ln.decode("utf-8", "replace") for ln in lines]

    def flush(self) -> list[str]:
        """The buffered partial line, if any."""
        rest, self._buf = self._buf, b""
        return [rest.decode("utf-8", "replace")] if rest.strip() else []

    def poll(self) -> list[str]:
        if self._f is None and not self._open():
            return []
        lines = self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines  # between rotate's rename and the new file: keep the old one
        if (st.st_dev, st.st_ino) != self._ino:
            # Rotated: what was written to the old file before the switch is
            # still ours, then the new file from its start.
            lines += self._drain() + self.flush()
            self.close()
            if self._open():
                lines += self._drain()
        elif st.st_size < self._pos:
            # Truncated in place: start over.
            self._pos, self._buf = 0, b""
            lines += self._drain()
        return lines

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


Keep = Callable[[LogRecord], bool]


def record_filter(*, err_only: bool = False, since_t: float | None = None) -> Keep:
    def keep(rec: LogRecord) -> bool:
        if err_only and not rec.is_err:
            return False
        return not (since_t is not None and rec.t is not None and rec.t < since_t)

    return keep


def _records(lines: list[str], keep: Keep) -> Iterator[LogRecord]:
    for raw in lines:
        if raw.strip():
            rec = parse_record(raw)
            if keep(rec):
                yield rec


def history(follower: LogFollower, n: int, keep: Keep) -> list[LogRecord]:
    """The last ``n`` kept records: the current file through ``follower`` (so
    following resumes exactly where history ends), then older rotated files
    until there are enough."""
    if n <= 0:
        follower.poll()  # skip to the end
        return []
    newest: deque[LogRecord] = deque(_records(follower.poll(), keep), maxlen=n)
    for path in rotated_files(follower.path):
        if len(newest) >= n:
            break
        try:
            lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            continue  # rotated away while we read
        older = list(_records(lines, keep))
        newest.extendleft(reversed(older[-(n - len(newest)) :]))
    return list(newest)


def follow(
    follower: LogFollower,
    keep: Keep,
    *,
    poll_s: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[LogRecord]:
    """Records appended from now on, across rotations, until ``stop()``."""
    while not stop():
        lines = follower.poll()
        if lines:
            yield from _records(lines, keep)
        else:
            time.sleep(poll_s)
