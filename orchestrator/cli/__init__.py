"""The ``zskill`` command line (typer), with the dashboard under it.

The entry point ``orchestrator.cli:main`` imports nothing heavy until a
command runs: each command imports what it needs, so ``zskill --help`` starts
fast.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    """The ``zskill`` console script."""
    from .app import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
