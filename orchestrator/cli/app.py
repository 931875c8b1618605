"""``zskill``: the command line of the zskill daemon.

Every command takes ``--config PATH`` (before or after the command's name;
else ``$ZSKILL_CONFIG``, else ./zskill.toml) and finds the daemon from it.
Exit codes: 0 ok, 1 the operation failed, 2 usage or config error, 3 no
daemon running (see :mod:`.errors`). zskill errors are caught at
the boundary (:func:`_guard`) and printed as one clean line.

This module is the typer app, that boundary, and the list of commands in the
order ``zskill --help`` shows them; the commands live in :mod:`.commands`.
The client, the config loader (pydantic), rich and the daemon are imported
inside the commands that use them, so ``zskill --help`` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec

import typer

from .commands import agent, daemon, deploy, observe, setup, skills
from .errors import EXIT_FAILED, EXIT_NO_DAEMON, EXIT_USAGE, CliError
from .options import CONFIG_ENV, GlobalConfigOpt

app = typer.Typer(
    name="zskill",
    help="Run an AI agent's skills as isolated processes and upgrade any one of them live.",
    no_args_is_help=True,
    # typer's --install-completion / --show-completion (bash, zsh, fish,
    # PowerShell); its completion code is imported only when asked for.
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with rich would import rich on every --help.
    rich_markup_mode=None,
)

P = ParamSpec("P")


# --- the boundary -----------------------------------------------------------------


def _guard(command: Callable[P, None]) -> Callable[P, None]:
    """Turn errors into one line on stderr and the exit code they mean."""

    @functools.wraps(command)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            code = _report(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return guarded


def _report(exc: Exception) -> int | None:
    """Print ``exc`` for the user; its exit code, or None if it is a bug."""
    if isinstance(exc, CliError):
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    from ipc import ConfigError, DaemonUnavailable, RemoteError, ZskillError

    if isinstance(exc, ConfigError):
        typer.echo(f"error: {exc.message}", err=True)
        return EXIT_USAGE
    if isinstance(exc, DaemonUnavailable):
        typer.echo(f"error: {exc.message}", err=True)
        return EXIT_NO_DAEMON
    if not isinstance(exc, ZskillError):
        return None
    kind = str(exc.details.get("type") or type(exc).__name__)
    typer.echo(f"error: {kind}: {exc.message}", err=True)
    from .format import stderr_lines

    for line in stderr_lines(exc.details):
        typer.echo(line, err=True)
    if isinstance(exc, RemoteError):
        if exc.remote_type:
            typer.echo(f"  remote type: {exc.remote_type}", err=True)
        if exc.traceback:
            typer.secho(exc.traceback.rstrip("\n"), err=True, dim=True)
    return EXIT_FAILED


# --- the options before the command -------------------------------------------------


@app.callback()
def _before_command(ctx: typer.Context, config: GlobalConfigOpt = None) -> None:
    """Run an AI agent's skills as isolated processes and upgrade any one of them live."""
    import os

    chosen = config if config is not None else os.environ.get(CONFIG_ENV)
    if chosen:
        # ``zskill --config X list`` means ``zskill list --config X``: X
        # becomes every command's default, and a --config after the
        # command's name still wins (click reads default_map below the
        # command line).
        ctx.default_map = _config_defaults(ctx.command, str(chosen))


def _config_defaults(command: object, config: str) -> dict[str, Any]:
    """A default_map giving ``config`` to every (sub)command (a group's
    ``commands`` are mapped in turn)."""
    subcommands = getattr(command, "commands", None)
    if not isinstance(subcommands, dict):
        return {"config": config}
    return {name: _config_defaults(sub, config) for name, sub in subcommands.items()}


# --- the commands, in the order of ``zskill --help`` ---------------------------------

COMMANDS: tuple[tuple[str | None, Callable[..., None]], ...] = (
    (None, daemon.up),
    (None, daemon.down),
    (None, daemon.reload),
    ("list", skills.list_skills),
    (None, skills.call),
    (None, skills.tools),
    (None, skills.start),
    (None, skills.stop),
    (None, skills.restart),
    (None, deploy.upgrade),
    (None, deploy.rollback),
    (None, deploy.rollout),
    (None, deploy.scale),
    (None, deploy.releases),
    (None, observe.logs),
    (None, observe.events),
    (None, observe.dashboard),
    (None, setup.mcp),
    (None, setup.new),
    (None, setup.keys),
    (None, agent.tasks),
)
for _name, _command in COMMANDS:
    app.command(_name)(_guard(_command))

# The core agent loop (the zskill[agent] extra): ``zskill agent run|submit|worker``
# and ``zskill task show|resume|cancel``.
SUBCOMMANDS: tuple[tuple[str, str, tuple[tuple[str, Callable[..., None]], ...]], ...] = (
    (
        "agent",
        "Run the core agent loop: durable tasks on pydantic-ai and DBOS.",
        (("run", agent.run), ("submit", agent.submit), ("worker", agent.worker)),
    ),
    (
        "task",
        "Show, resume or cancel one of the agent's tasks.",
        (
            ("show", agent.show),
            ("resume", agent.resume),
            ("cancel", agent.cancel),
        ),
    ),
)
for _group, _help, _commands in SUBCOMMANDS:
    _sub = typer.Typer(name=_group, help=_help, no_args_is_help=True, rich_markup_mode=None)
    for _name, _command in _commands:
        _sub.command(_name)(_guard(_command))
    app.add_typer(_sub)


@app.command()
def version() -> None:
    """Print zskill's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        typer.echo(f"zskill {package_version('zskill')}")
    except PackageNotFoundError:
        typer.echo("zskill (version unknown: not installed)")


def main() -> None:
    """The ``zskill`` console script (and ``python -m orchestrator``)."""
    app(prog_name="zskill")
