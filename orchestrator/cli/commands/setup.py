"""``zskill new``, ``keys`` and ``mcp``: scaffold a skill, create the
CurveZMQ keys a tcp:// endpoint needs, serve the skills to an MCP host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_NO_DAEMON, CliError, UsageError
from ..options import DEFAULT_CONFIG, ConfigOpt, load


def mcp(
    config: ConfigOpt = DEFAULT_CONFIG,
    start: Annotated[
        bool,
        typer.Option(
            "--start",
            help="Start the daemon (detached) when none runs, so one host entry runs everything.",
        ),
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            metavar="auto|legacy",
            help="auto: the MCP generation the host opens with; legacy: the initialize "
            "handshake only, so hosts that cache the tool list hear of every change.",
        ),
    ] = "auto",
) -> None:
    """Serve every running skill's tools to an MCP host over stdio.

    Register it with the host as a command: zskill mcp --start --config /abs/zskill.toml
    """
    from ..daemon import ensure_daemon

    if protocol not in ("auto", "legacy"):
        raise UsageError(f"--protocol must be auto or legacy, not {protocol!r}")
    cfg = load(config, strict=start)  # starting a daemon applies the whole file
    if start:
        ensure_daemon(cfg, why="zskill mcp --start")
    from ipc import DaemonUnavailable

    from ..._mcp.launch import serve

    try:
        serve(cfg, protocol="legacy" if protocol == "legacy" else "auto")
    except DaemonUnavailable as exc:
        # What an MCP host shows of a server that would not start: say how to fix it.
        raise CliError(
            f"no zskill daemon is running for {cfg.run_dir}: start it with "
            f"`zskill up --detach --config {cfg.path}`, or add --start to this "
            "`zskill mcp` command so that it starts one",
            EXIT_NO_DAEMON,
        ) from exc


def new(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="The skill's name: a letter, then letters, digits, - or _."
        ),
    ],
    parent: Annotated[
        Path, typer.Option("--dir", metavar="PARENT", help="Create the skill in PARENT/NAME.")
    ] = Path("."),
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Scaffold a new skill: PARENT/NAME/main.py and README.md."""
    from ..scaffold import scaffold

    made = scaffold(name, parent, config_dir=config.expanduser().absolute().parent)
    shown = (
        os.path.relpath(made.directory)
        if made.directory.is_relative_to(Path.cwd())
        else str(made.directory)
    )
    typer.echo(f"created {shown}/ ({', '.join(f.name for f in made.files)})")
    typer.echo(f"\nadd this to {config}:\n")
    typer.echo(made.toml_table())


def keys(
    client: Annotated[
        str | None,
        typer.Option("--client", metavar="NAME", help="Also make an authorized client pair."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Create CurveZMQ keys, required by any tcp:// endpoint (see [daemon] tcp_control)."""
    from ..._curve import create_client_keys, ensure_server_keys

    cfg = load(config)
    secret, made = ensure_server_keys(cfg.run_dir)
    public = secret.with_name("server.key")
    typer.echo(f"server public key: {public}" + (" (created)" if made else " (exists)"))
    if client is not None:
        path = create_client_keys(cfg.run_dir, client)
        typer.echo(f"client {client!r} secret key: {path} (authorized)")
        typer.echo(
            f'a client connects with Client("tcp://HOST:PORT", server_key="{public}", '
            f'client_key="{path}")'
        )
    if cfg.daemon.tcp_control:
        typer.echo("restart the daemon for a change of keys to apply to new connections")
