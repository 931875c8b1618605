"""Skill output capture: every line a skill prints goes to its log as JSON
(time, stream, version, pid, line), with size rotation so logs never fill a
disk.

    logs/<skill>.log      newest
    logs/<skill>.log.1    older ... up to .log.<keep>
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

Echo = Callable[[str, str, int, str], None]
"""Where a capture's lines go besides the log: (stream, version, pid, text)."""

MAX_LINE = 16384
"""A longer line is split; a skill printing megabytes without a newline
cannot grow the daemon's buffers without bound."""

TAIL_LINES = 20
TAIL_LINE_CHARS = 240
"""Each process's last stderr lines are kept in memory too (at most 20 of
240 characters, ~5 KB), so a failed start, restart or upgrade can show its
traceback at once, without reading the log file back on the daemon's thread."""


def new_tail() -> deque[str]:
    return deque(maxlen=TAIL_LINES)


class LogFile:
    """Append-only JSON-lines file rotated at ``max_bytes``, keeping ``keep`` old files."""

    def __init__(self, path: Path, *, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab", buffering=0)  # noqa: SIM115 -- kept open for appends
        self._size = self._f.tell()

    def write_record(self, record: dict[str, object]) -> None:
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        self._f.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._f.close()


class StreamCapture:
    """Turns the bytes read from one pipe into log records, one per line."""

    __slots__ = ("_buf", "_echo", "_log", "_tail", "pid", "stream", "version")

    def __init__(
        self,
        log: LogFile,
        stream: str,
        pid: int,
        version: str,
        tail: deque[str] | None = None,
        echo: Echo | None = None,
    ) -> None:
        self._log = log
        self._buf = b""
        self._tail = tail  # where the last lines go too (stderr's), if anywhere
        self._echo = echo  # a foreground viewer's tap, if any
        self.stream = stream
        self.pid = pid
        self.version = version

    def feed(self, data: bytes) -> None:
        buf = self._buf + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(rest) > MAX_LINE:
            self._emit(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._buf = rest

    def read_from(self, fd: int) -> bool:
        """Feed what the pipe ``fd`` holds now; True at its end (flushed).
        Bounded, so one chatty skill cannot starve the loop."""
        for _ in range(16):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                self.flush()
                return True
            self.feed(data)
        return False

    def flush(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = b""

    def _emit(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self._log.write_record(
            {
                "t": round(time.time(), 6),
                "stream": self.stream,
                "version": self.version,
                "pid": self.pid,
                "line": text,
            }
        )
        if self._echo is not None:
            self._echo(self.stream, self.version, self.pid, text)
        if self._tail is not None:
            cut = text if len(text) <= TAIL_LINE_CHARS else text[: TAIL_LINE_CHARS - 3] + "..."
            self._tail.append(cut)
