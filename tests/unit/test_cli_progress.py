"""zskill call's progress bar: drawn from the first update on, only where
there is a terminal, with the handler's count, total and message."""

from __future__ import annotations

from orchestrator import Progress
from orchestrator.cli.progress import CallProgress


def test_the_bar_follows_the_updates_and_starts_with_the_first() -> None:
    with CallProgress("batch.process", enabled=True) as bar:
        assert bar._bar is None  # nothing drawn for a call that reports nothing
        bar(Progress(1, 3.0, 10.0, "item 3"))
        bar(Progress(1, 4.0, 10.0, None))
        assert bar._bar is not None and bar._task is not None
        (task,) = bar._bar.tasks
        assert (task.completed, task.total, task.description) == (4.0, 10.0, "batch.process")
        bar(Progress(1, 5.0, None, "a total left out"))  # the bar keeps the last one known
        assert (task.completed, task.total) == (5.0, 10.0)
        assert task.description == "batch.process: a total left out"
    assert bar._bar is None and bar.updates == 3


def test_no_terminal_no_bar() -> None:
    with CallProgress("batch.process", enabled=False) as bar:
        bar(Progress(1, 1.0, 2.0, None))
    assert bar._bar is None and bar.updates == 1
