"""What every ``zskill`` command shares: its options and arguments, and what
``--config`` leads to (the loaded config, a client whose daemon answered).

Only typer and the standard library at import time: the config loader
(pydantic) and the client are imported when a command calls :func:`load` or
:func:`connect`, so ``zskill --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .._client.sync import Client
    from .._config import Config

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", metavar="PATH", help="The daemon's zskill.toml."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SkillArg = Annotated[
    str, typer.Argument(metavar="SKILL", help="The skill's name, as in zskill.toml.")
]
DEFAULT_CONFIG = Path("zskill.toml")


def load(config: Path) -> Config:
    """The config at ``config``; ConfigError (exit 2) when it is invalid."""
    from .._config import load as load_config

    return load_config(config)


def connect(config: Config) -> Client:
    """A client of ``config``'s daemon; DaemonUnavailable (exit 3) when none runs."""
    from .daemon import connect as connect_daemon

    return connect_daemon(config)
