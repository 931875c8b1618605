"""What every ``zskill`` command shares: its options and arguments, and what
``--config`` leads to (the loaded config, a client whose daemon answered).

Only typer and the standard library at import time: the config loader
(pydantic) and the client are imported when a command calls :func:`load` or
:func:`connect`, so ``zskill --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .errors import UsageError

if TYPE_CHECKING:
    from .._client.sync import Client
    from .._config import Config

CONFIG_ENV = "ZSKILL_CONFIG"
ConfigOpt = Annotated[
    Path,
    # No envvar here: ZSKILL_CONFIG is read by the app's callback, so that a
    # --config before the command's name can outrank it (click would read
    # an envvar before the default the callback sets).
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="The daemon's zskill.toml (also before the command's name; or $ZSKILL_CONFIG).",
    ),
]
GlobalConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="The daemon's zskill.toml, for any command (default: $ZSKILL_CONFIG, ./zskill.toml).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JsonlOut = Annotated[
    bool,
    typer.Option("--jsonl", help="Print JSON lines as they come (one object per line)."),
]
SkillArg = Annotated[
    str, typer.Argument(metavar="SKILL", help="The skill's name, as in zskill.toml.")
]
DEFAULT_CONFIG = Path("zskill.toml")


def seconds(value: float | None) -> float | None:
    """An option's callback: a number of seconds must be positive and finite.
    0, a negative number, nan or inf is a usage error (exit 2), found before
    anything connects: a call given 0 would give up at once."""
    if value is not None and not 0.0 < value < math.inf:  # NaN fails this too
        raise typer.BadParameter(f"{value} is not a positive, finite number of seconds")
    return value


def load(config: Path, *, strict: bool = False) -> Config:
    """The config at ``config``; ConfigError (exit 2) when it is invalid, and
    UsageError (exit 2) when its run dir is unusable (:func:`check_run_dir`).

    Not ``strict`` (commands that talk to a running daemon, which keeps the
    config it has): a file whose skills are broken but whose ``[daemon]``
    table is good still reaches the daemon when one runs, with a warning on
    stderr; with none running, the file's error is the news. ``up`` and
    ``reload``, which apply the file, are strict."""
    from ipc import ConfigError

    from .._config import load as load_config
    from .._config import load_link, parse
    from .._rundir import RunDir
    from .served import elsewhere, running_run_dir

    if strict:
        cfg = load_config(config)
    else:
        path = Path(config).expanduser().absolute()
        try:
            cfg, error = load_link(path)
        except ConfigError as exc:  # not even the [daemon] table: follow the daemon's note
            noted = running_run_dir(path)
            if noted is None:
                raise
            cfg, error = parse({"daemon": {"run_dir": str(noted)}}, path), exc
        if not RunDir(cfg.run_dir).daemon_running() and (moved := elsewhere(cfg.path, cfg.run_dir)):
            typer.echo(
                f"warning: {cfg.path} names run dir {cfg.run_dir}, but the daemon serving "
                f"it runs on {moved} (started before run_dir changed): commands go there; "
                "`zskill down`, then `zskill up`, moves it",
                err=True,
            )
            cfg = dataclasses.replace(cfg, run_dir=moved)
        if error is not None and not RunDir(cfg.run_dir).daemon_running():
            raise error
        if error is not None:
            typer.echo(
                f"warning: {error}\n(the running daemon keeps the config it has; "
                "fix the file, then `zskill reload`)",
                err=True,
            )
    check_run_dir(cfg.run_dir, cfg.path)
    return cfg


def check_run_dir(run_dir: Path, config: Path) -> None:
    """Refuse a run dir that exists but is not a directory, or is another
    user's, with the reason and the key to change (UsageError, exit 2).

    Every command meets it before it reads or writes there: the daemon and
    the client refuse such a run dir themselves, but ``logs`` and ``keys``
    would otherwise fail deep in a file operation (a traceback), or write
    keys into another user's directory. A missing run dir is no error: the
    daemon makes it."""
    where = f"cannot use {run_dir} as the run dir (run_dir in {config})"
    try:
        st = os.stat(run_dir)
    except FileNotFoundError:
        return
    except OSError as exc:  # a file on the way (ENOTDIR), no permission (EACCES)
        raise UsageError(f"{where}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{where}: it is not a directory")
    if st.st_uid != os.getuid():
        raise UsageError(
            f"{where}: it belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
        )


def connect(config: Config) -> Client:
    """A client of ``config``'s daemon; DaemonUnavailable (exit 3) when none runs."""
    from .daemon import connect as connect_daemon

    return connect_daemon(config)
