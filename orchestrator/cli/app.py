"""``zskill``: the command line of the zskill daemon.

Every command takes ``--config PATH`` (default ./zskill.toml) and finds the
daemon from it. Exit codes: 0 ok, 1 the operation failed, 2 usage or config
error, 3 no daemon running (see :mod:`._cli_errors`). zskill errors are
caught at the boundary (:func:`_guard`) and printed as one clean line.

The client, the config loader (pydantic), rich and the daemon are imported
inside the commands that use them, so ``zskill --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec

import typer

from .errors import EXIT_FAILED, EXIT_NO_DAEMON, EXIT_USAGE, CliError, UsageError

if TYPE_CHECKING:
    from .._client.sync import Client
    from .._config import Config

app = typer.Typer(
    name="zskill",
    help="Run an AI agent's skills as isolated processes and upgrade any one of them live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with rich would import rich on every --help.
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", metavar="PATH", help="The daemon's zskill.toml."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SkillArg = Annotated[
    str, typer.Argument(metavar="SKILL", help="The skill's name, as in zskill.toml.")
]
DEFAULT_CONFIG = Path("zskill.toml")

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
    if isinstance(exc, RemoteError):
        if exc.remote_type:
            typer.echo(f"  remote type: {exc.remote_type}", err=True)
        if exc.traceback:
            typer.secho(exc.traceback.rstrip("\n"), err=True, dim=True)
    return EXIT_FAILED


def _load(config: Path) -> Config:
    from .._config import load

    return load(config)


def _connect(config: Config, *, timeout_s: float = 60.0) -> Client:
    from .daemon import connect

    return connect(config, timeout_s=timeout_s)


# --- the daemon -------------------------------------------------------------------


@app.command()
@_guard
def up(
    config: ConfigOpt = DEFAULT_CONFIG,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once it serves.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(metavar="S", help="With --detach: seconds to wait for the daemon to answer."),
    ] = 15.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (overrides [daemon] metrics_port).",
        ),
    ] = None,
) -> None:
    """Start the daemon (in the foreground unless --detach)."""
    cfg = _load(config)
    if metrics_port is not None:
        import dataclasses

        daemon = cfg.daemon.model_copy(update={"metrics_port": metrics_port})
        cfg = dataclasses.replace(cfg, daemon=daemon)
    if not detach:
        from .._daemon.loop import serve

        typer.echo(
            f"zskill daemon starting (pid {os.getpid()}, run dir {cfg.run_dir}); Ctrl-C stops it",
            err=True,
        )
        serve(cfg)
        return
    from .daemon import ping_quietly, start_detached

    running = ping_quietly(cfg)
    if running is not None:
        raise CliError(
            f"a zskill daemon already runs on {cfg.run_dir} (pid {running.get('pid', '?')})"
        )
    argv = [sys.executable, "-m", "orchestrator", "up", "--config", str(cfg.path)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    pid, _ = start_detached(cfg, timeout_s=timeout, argv=argv)
    typer.echo(f"zskill daemon started (pid {pid}, run dir {cfg.run_dir})")


@app.command()
@_guard
def down(
    config: ConfigOpt = DEFAULT_CONFIG,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="S", help="Seconds to wait for skills to drain and the daemon to exit."
        ),
    ] = 60.0,
) -> None:
    """Stop the daemon: its skills drain, then it exits."""
    from ipc import DaemonUnavailable

    from .daemon import DaemonProcess

    cfg = _load(config)
    with _connect(cfg) as client:
        daemon = DaemonProcess(int(client.ping()["pid"]))
        # Gone before its answer reached us is what we asked for.
        with contextlib.suppress(DaemonUnavailable):
            client.shutdown()
    if not daemon.wait_gone(timeout):
        raise CliError(
            f"the daemon (pid {daemon.pid}) still runs after {timeout:g} s "
            "(skills may still be draining; try a longer --timeout)"
        )
    typer.echo("zskill daemon stopped")


# --- skills -----------------------------------------------------------------------


@app.command("list")
@_guard
def list_skills(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOut = False) -> None:
    """Show every skill: state, version, pid, uptime, load."""
    cfg = _load(config)
    with _connect(cfg) as client:
        statuses = client.list()
    if as_json:
        from .format import to_json

        typer.echo(to_json(statuses, indent=2))
        return
    from .render import console, list_notes, list_table, natural_width

    if not statuses:
        typer.echo(f"no skills in {cfg.path}")
        return
    out = console()
    if out.is_terminal:
        table = list_table(statuses, width=out.width)
    else:
        # Piped or redirected: the whole table, as wide as it is (no terminal
        # to fit; a reader like grep or less wants every column).
        table = list_table(statuses)
        out.width = max(out.width, natural_width(table))
    out.print(table)
    for note in list_notes(statuses):
        out.print(note)


def _parse_args(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--json: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--json: expected a JSON object, got {type(value).__name__}")
    return value


@app.command()
@_guard
def call(
    skill: SkillArg,
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="The tool to call.")],
    args: Annotated[
        str | None,
        typer.Option(
            "--json", metavar="ARGS", help='Arguments as a JSON object: \'{"text": "hi"}\'.'
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="S", help="Seconds the call may take.")
    ] = None,
    show_version: Annotated[
        bool, typer.Option("--show-version", help="Also print (to stderr) who served the call.")
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Call a tool and print its result (text as is, anything else as JSON)."""
    from .format import human_elapsed, to_json

    arguments = _parse_args(args)
    cfg = _load(config)
    with _connect(cfg) as client:
        result = client.call_detailed(skill, tool, arguments, timeout=timeout)
    value = result.value
    typer.echo(value if isinstance(value, str) else to_json(value, indent=2))
    if show_version:
        typer.echo(f"{skill} {result.version} in {human_elapsed(result.elapsed_s)}", err=True)


DONE = {"start": "started", "stop": "stopped", "restart": "restarted"}


def _lifecycle(op: str, skill: str, config: Path, as_json: bool) -> None:
    from .format import status_line, to_json

    cfg = _load(config)
    with _connect(cfg) as client:
        ops: dict[str, Callable[[str], dict[str, Any]]] = {
            "start": client.start,
            "stop": client.stop,
            "restart": client.restart,
        }
        t0 = time.monotonic()
        status = ops[op](skill)
        elapsed_s = time.monotonic() - t0
    if as_json:
        typer.echo(to_json(status, indent=2))
    else:
        typer.echo(status_line(DONE[op], skill, status, elapsed_s))


@app.command()
@_guard
def start(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Start a stopped skill; returns once it serves."""
    _lifecycle("start", skill, config, as_json)


@app.command()
@_guard
def stop(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Stop a skill: it drains its calls, then exits."""
    _lifecycle("stop", skill, config, as_json)


@app.command()
@_guard
def restart(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Restart a skill; returns once the new process serves."""
    _lifecycle("restart", skill, config, as_json)


# --- deployments ------------------------------------------------------------------


def _deploy(
    op: str,
    skill: str,
    config: Path,
    *,
    from_dir: Path | None,
    as_json: bool,
) -> None:
    """upgrade / rollback with live progress; exit 1 when rolled back."""
    from ipc import UpgradeFailed

    from .format import to_json, upgrade_summary
    from .render import ProgressPrinter, console

    source: str | None = None
    if from_dir is not None:
        if not from_dir.is_dir():
            what = "does not exist" if not from_dir.exists() else "is not a directory"
            raise UsageError(f"--from {from_dir}: {what}")
        source = str(from_dir.expanduser().absolute())  # the daemon's cwd is not ours
    cfg = _load(config)
    printer = ProgressPrinter(console())

    def on_progress(progress: Any) -> None:
        if not isinstance(progress, dict):
            return
        if as_json:
            typer.echo(to_json(progress))
        else:
            printer(progress)

    with _connect(cfg) as client:
        try:
            if op == "upgrade":
                report = client.upgrade(skill, from_dir=source, on_progress=on_progress)
            else:
                report = client.rollback(skill, on_progress=on_progress)
        except UpgradeFailed as exc:
            printer.close()
            serving = _still_serving(client, skill, exc.details)
            if as_json:
                error = {"type": "UpgradeFailed", "message": exc.message, "details": exc.details}
                typer.echo(to_json({"error": error, "serving": serving}))
            else:
                typer.secho(_failure_line(op, exc.message, exc.details), err=True, fg="red")
                then = "rolled back; " if op == "upgrade" else ""
                typer.echo(f"{then}{serving}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            printer.close()
            typer.echo(
                f"interrupted: the daemon carries the {op} of {skill} on; "
                f"follow it with `zskill events -f --skill {skill}`",
                err=True,
            )
            raise typer.Exit(130) from None
        finally:
            printer.close()
    if as_json:
        typer.echo(to_json(report))
        return
    printer.replay(report)
    typer.echo(upgrade_summary(skill, report))


def _failure_line(op: str, message: str, details: dict[str, Any]) -> str:
    """``upgrade failed at health: health hook returned False``."""
    step, reason = details.get("step"), details.get("reason")
    if reason:
        return f"{op} failed at {step}: {reason}" if step else f"{op} failed: {reason}"
    return f"{op} failed: {message}"


def _still_serving(client: Client, skill: str, details: dict[str, Any]) -> str:
    """What serves ``skill`` now, asked of the daemon after a failed upgrade."""
    from ipc import ZskillError

    try:
        status = next((s for s in client.list() if s.get("name") == skill), None)
    except ZskillError:
        status = None
    if status is None:
        old = details.get("old_version") or details.get("version")
        return f"{old} still serving" if old else f"{skill}: state unknown"
    if status.get("state") in ("running", "upgrading"):
        return f"{status.get('version')} still serving"
    return f"{skill} is {status.get('state')}"


@app.command()
@_guard
def upgrade(
    skill: SkillArg,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", metavar="DIR", help="Start the new version from DIR."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Upgrade a skill live; exit 0 only when the new version serves.

    The new version starts beside the old one and must pass its health check;
    then calls switch to it and the old one drains. A failure before the switch
    rolls back: the old version keeps serving and the exit code is 1.
    """
    _deploy("upgrade", skill, config, from_dir=from_dir, as_json=as_json)


@app.command()
@_guard
def rollback(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Go back to the skill's previous release, live."""
    _deploy("rollback", skill, config, from_dir=None, as_json=as_json)


@app.command()
@_guard
def releases(skill: SkillArg, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOut = False) -> None:
    """The releases of a skill kept for rollback, newest first."""
    cfg = _load(config)
    with _connect(cfg) as client:
        kept = client.releases(skill)
    if as_json:
        from .format import to_json

        typer.echo(to_json(kept, indent=2))
        return
    if not kept:
        typer.echo(f"no releases kept for {skill}")
        return
    from .render import console, releases_table

    out = console()
    out.print(releases_table(kept, width=out.width))


# --- what happened ----------------------------------------------------------------


@app.command()
@_guard
def logs(
    skill: SkillArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", help="Lines of history.", min=0)
    ] = 50,
    err: Annotated[bool, typer.Option("--err", help="Only stderr.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored JSON lines.")] = False,
    since: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Only lines newer than this: 30s, 10m, 2h, 1d."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Print a skill's output (all its versions), read from the run dir."""
    from . import logs as cl
    from .scaffold import check_name

    since_t = None
    if since is not None:
        try:
            since_t = time.time() - cl.parse_since(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    check_name(skill)
    cfg = _load(config)
    path = cl.log_path(cfg.run_dir, skill)
    if skill not in cfg.skills and not path.exists() and not cl.rotated_files(path):
        raise UsageError(f"no skill {skill!r} in {cfg.path}, and no logs of it in {path.parent}")
    keep = cl.record_filter(err_only=err, since_t=since_t)
    color = not as_json and sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def emit(rec: cl.LogRecord) -> None:
        sys.stdout.write((rec.raw if as_json else cl.format_record(rec, color=color)) + "\n")

    follower = cl.LogFollower(path)
    try:
        for rec in cl.history(follower, lines, keep):
            emit(rec)
        if not follow:
            return
        if not path.exists():
            typer.echo(f"(no log yet at {path}; waiting)", err=True)
        sys.stdout.flush()
        for rec in cl.follow(follower, keep):
            emit(rec)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a follow: not a failure
    finally:
        follower.close()
        sys.stdout.flush()


@app.command()
@_guard
def events(
    skill: Annotated[
        str | None, typer.Option("--skill", metavar="SKILL", help="Only this skill's events.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", help="Events of history.", min=0)
    ] = 50,
    as_json: JsonOut = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Lifecycle and deployment history; -f to follow live."""
    from .format import event_line, to_json

    def emit(event: dict[str, Any]) -> None:
        typer.echo(to_json(event) if as_json else event_line(event))

    cfg = _load(config)
    with _connect(cfg) as client:
        # Subscribe before reading history, so nothing falls between the two;
        # what both deliver is dropped by seq.
        stream = client.subscribe(skill) if follow else None
        try:
            last_seq = -1
            for event in client.events(skill, limit=lines) if lines else []:
                emit(event)
                last_seq = max(last_seq, int(event.get("seq", -1)))
            if stream is None:
                return
            quiet_since = time.monotonic()
            while True:
                ev = stream.next(1.0)
                if ev is None:
                    if time.monotonic() - quiet_since > 5.0:
                        client.ping()  # a daemon gone ends the follow (exit 3)
                        quiet_since = time.monotonic()
                    continue
                quiet_since = time.monotonic()
                if ev.seq > last_seq:
                    last_seq = ev.seq
                    emit(
                        {
                            "seq": ev.seq,
                            "time": ev.time,
                            "skill": ev.skill,
                            "type": ev.type,
                            "data": ev.data,
                        }
                    )
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a follow: not a failure
        finally:
            if stream is not None:
                stream.close()


@app.command()
@_guard
def dashboard(
    config: ConfigOpt = DEFAULT_CONFIG,
    interval: Annotated[
        float,
        typer.Option(metavar="S", min=0.1, help="Seconds between questions to the daemon."),
    ] = 0.5,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (also when piped).")
    ] = False,
) -> None:
    """Live view of every skill, recent events and the selected skill's log.

    Keys: up/down or j/k select a skill (its log shows below), q quits. The
    dashboard rides through a daemon restart: it shows "disconnected", then
    picks up the new daemon.
    """
    from .dashboard.app import run
    from .render import console

    cfg = _load(config)
    client = _connect(cfg)
    run(cfg, client, console(), interval_s=interval, once=once)


# --- MCP --------------------------------------------------------------------------


@app.command()
@_guard
def mcp(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Serve every running skill's tools to an MCP host over stdio.

    Register it with the host as a command: zskill mcp --config /abs/zskill.toml
    """
    from .._mcp.bridge import serve

    serve(_load(config))


# --- authoring --------------------------------------------------------------------


@app.command()
@_guard
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
    from .scaffold import scaffold

    made = scaffold(name, parent, config_dir=config.expanduser().absolute().parent)
    shown = (
        os.path.relpath(made.directory)
        if made.directory.is_relative_to(Path.cwd())
        else str(made.directory)
    )
    typer.echo(f"created {shown}/ ({', '.join(f.name for f in made.files)})")
    typer.echo(f"\nadd this to {config}:\n")
    typer.echo(made.toml_table())


@app.command()
@_guard
def keys(
    client: Annotated[
        str | None,
        typer.Option("--client", metavar="NAME", help="Also make an authorized client pair."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Create CurveZMQ keys, required by any tcp:// endpoint (see [daemon] tcp_control)."""
    from .._curve import create_client_keys, ensure_server_keys

    cfg = _load(config)
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
