"""Keys for ``zskill dashboard``, read from a terminal without a thread.

The terminal goes into cbreak mode (keys arrive one by one, unechoed; Ctrl-C
still raises KeyboardInterrupt) and the render loop waits for its next frame
in ``select`` on stdin: a key wakes it at once, and an idle dashboard sleeps
in the kernel instead of polling. Stdin that is not a terminal gives no keys
(the loop then just paces its frames).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from types import TracebackType
from typing import Any, TextIO

# Longest first, so that "\x1b[A" is not read as Escape then "[A".
_SEQUENCES: tuple[tuple[bytes, str], ...] = (
    (b"\x1b[5~", "pageup"),
    (b"\x1b[6~", "pagedown"),
    (b"\x1b[1~", "home"),
    (b"\x1b[4~", "end"),
    (b"\x1b[A", "up"),
    (b"\x1b[B", "down"),
    (b"\x1b[H", "home"),
    (b"\x1b[F", "end"),
    (b"\x1bOA", "up"),  # the same keys in "application cursor" mode
    (b"\x1bOB", "down"),
    (b"\x1bOH", "home"),
    (b"\x1bOF", "end"),
)
_SINGLE = {
    b"k": "up",
    b"j": "down",
    b"g": "home",
    b"G": "end",
    b"q": "quit",
    b"Q": "quit",
    b"\x04": "quit",  # Ctrl-D
}


def parse_keys(data: bytes) -> list[str]:
    """Key names in ``data``; bytes that mean nothing to the dashboard are skipped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        for seq, name in _SEQUENCES:
            if data.startswith(seq, i):
                keys.append(name)
                i += len(seq)
                break
        else:
            single = _SINGLE.get(data[i : i + 1])
            if single is not None:
                keys.append(single)
            i += 1
    return keys


class Keyboard:
    """``with Keyboard(sys.stdin) as kb: keys = kb.wait(0.25)``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        stream = sys.stdin if stream is None else stream
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            fd = -1
        self._fd = fd if fd >= 0 and os.isatty(fd) else None
        self._saved: list[Any] | None = None  # termios attributes to restore

    @property
    def interactive(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> Keyboard:
        if self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None and self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def wait(self, timeout_s: float) -> list[str]:
        """Keys pressed within ``timeout_s`` (returns at the first of them)."""
        if self._fd is None:
            time.sleep(timeout_s)  # no keys can come: this only paces the frames
            return []
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
        if not ready:
            return []
        try:
            data = os.read(self._fd, 256)
        except OSError:
            return []
        if not data:
            return ["quit"]  # the terminal went away
        return parse_keys(data)
