"""``zskill call``'s live progress: a rich bar on stderr when stderr is a
terminal, nothing when it is piped (a script reading stdout, or stderr,
gets no redraws mixed into it).

The bar shows what the handler reported (``ctx.progress(done, total,
message)``): a bar with a count when it knows the total, a pulsing one when
it does not, and its last message. It appears with the first update (a
tool that reports none draws nothing) and is transient: it leaves the
terminal once the call is answered, so only the result remains.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress as Bar
    from rich.progress import TaskID

    from .._client.progress import Progress


class CallProgress:
    """Feed it the call's Progress updates (``on_progress``) inside ``with``."""

    def __init__(self, what: str, *, enabled: bool | None = None) -> None:
        self.what = what
        # rich loads only when there is a terminal to draw on.
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.updates = 0
        self._bar: Bar | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> CallProgress:
        return self

    def __call__(self, update: Progress) -> None:
        self.updates += 1
        if not self.enabled:
            return
        if self._bar is None:
            self._start()  # at the first update: a call that reports none draws nothing
        assert self._bar is not None and self._task is not None
        description = self.what if not update.message else f"{self.what}: {update.message}"
        self._bar.update(
            self._task, completed=update.done, total=update.total, description=description
        )

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.what, total=None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


__all__ = ["CallProgress"]
