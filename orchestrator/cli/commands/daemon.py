"""``zskill up``, ``zskill down`` and ``zskill reload``: start the daemon (in
the foreground, or detached until it serves), stop it (its skills drain,
then it exits), and have it read its config again."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import EXIT_FAILED, CliError
from ..options import DEFAULT_CONFIG, ConfigOpt, JsonOut, connect, load, seconds

if TYPE_CHECKING:
    from ..._config import Config


def up(
    config: ConfigOpt = DEFAULT_CONFIG,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once it serves.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="S",
            help="With --detach: seconds to wait for the daemon to answer.",
            callback=seconds,
        ),
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
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Upgrade a skill in place whenever its files change (as watch = true for all).",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="In the foreground: do not show events and the skills' output."
        ),
    ] = False,
) -> None:
    """Start the daemon (in the foreground unless --detach)."""
    from ..served import elsewhere

    cfg = load(config, strict=True)
    for sc in cfg.skills.values():
        sc.file_env()  # an env_file that cannot be read: a config error now (exit 2)
    if (other := elsewhere(cfg.path, cfg.run_dir)) is not None:
        raise CliError(
            f"a zskill daemon already serves {cfg.path} from run dir {other} (run_dir "
            f"changed since it started); `zskill down` stops it, then `zskill up` starts "
            f"one on {cfg.run_dir}"
        )
    if metrics_port is not None:
        import dataclasses

        daemon = cfg.daemon.model_copy(update={"metrics_port": metrics_port})
        cfg = dataclasses.replace(cfg, daemon=daemon)
    if not detach:
        _foreground(cfg, quiet=quiet, watch=watch)
        return
    from ..daemon import ping_quietly, start_detached

    running = ping_quietly(cfg)
    if running is not None:
        raise CliError(
            f"a zskill daemon already runs on {cfg.run_dir} (pid {running.get('pid', '?')})"
        )
    # --quiet: the skills' output is in their logs, not in zskilld.out too.
    argv = [sys.executable, "-m", "orchestrator", "up", "--quiet", "--config", str(cfg.path)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    if watch:
        argv.append("--watch")
    pid = start_detached(cfg, argv=argv, timeout_s=timeout)
    typer.echo(f"zskill daemon started (pid {pid}, run dir {cfg.run_dir})")
    _report_startup(cfg)


def _foreground(cfg: Config, *, quiet: bool, watch: bool) -> None:
    """Run the daemon here until Ctrl-C (or ``zskill down``), showing what
    happens unless ``quiet``, then say what the shutdown stopped."""
    from ..served import noted

    with noted(cfg.path, cfg.run_dir):  # how commands find it if the file changes
        _serve_here(cfg, quiet=quiet, watch=watch)


def _serve_here(cfg: Config, *, quiet: bool, watch: bool) -> None:
    from ..._daemon.loop import serve

    typer.echo(
        f"zskill daemon starting (pid {os.getpid()}, run dir {cfg.run_dir}); Ctrl-C stops it",
        err=True,
    )
    if quiet:
        serve(cfg, watch_all=watch)
        typer.echo("zskill daemon stopped", err=True)
        return
    from ..._daemon.tap import Tap
    from ..foreground import ForegroundView

    tap = Tap()
    view = ForegroundView(tap).start()
    try:
        serve(cfg, watch_all=watch, tap=tap)
    finally:
        view.close()
    what = ", ".join(view.stopped) if view.stopped else "no skill was running"
    typer.echo(f"zskill daemon stopped; stopped {what}", err=True)


def _report_startup(cfg: Config) -> None:
    """Wait (bounded) for every autostart skill, print each one's state, and
    exit 1 naming those that could not start; the daemon runs on."""
    from ..startup import report_lines, wait_ready

    with connect(cfg) as client:
        startup = wait_ready(client, cfg)
    for line in report_lines(startup):
        typer.echo(line)
    failed = startup.failed()
    if failed:
        names = ", ".join(s["name"] for s in failed)
        raise CliError(
            f"{len(failed)} of {len(startup.statuses)} skills could not start ({names}); "
            "the daemon keeps running the others (`zskill down` stops it)"
        )


def down(
    config: ConfigOpt = DEFAULT_CONFIG,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="S",
            help="Seconds to wait for skills to drain and the daemon to exit.",
            callback=seconds,
        ),
    ] = 60.0,
) -> None:
    """Stop the daemon: its skills drain, then it exits."""
    from ipc import DaemonUnavailable

    from ..daemon import DaemonProcess

    cfg = load(config)
    try:
        client = connect(cfg)
    except DaemonUnavailable:
        # What down is for already holds: say so, and succeed.
        typer.echo(f"no zskill daemon is running on {cfg.run_dir}; nothing to stop")
        return
    with client:
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


def reload(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOut = False) -> None:
    """Read zskill.toml again: start new skills, stop removed ones, restart changed ones.

    Untouched skills keep running as they are. An invalid file is refused
    whole (exit 2) and nothing changes. Sending the daemon SIGHUP does the same.
    """
    from ..format import reload_line, stderr_lines, to_json

    cfg = load(config, strict=True)

    def on_progress(outcome: Any) -> None:
        if isinstance(outcome, dict) and not as_json:
            typer.echo(reload_line(outcome))
            details = (outcome.get("error") or {}).get("details") or {}
            for line in stderr_lines(details):  # why the new process failed
                typer.echo(f"      {line}")

    with connect(cfg) as client:
        if not as_json:  # the file the daemon reads: the one it was started with
            typer.echo(f"reloading {client.ping().get('config', cfg.path)}")
        result = client.reload(on_progress=on_progress)
    if as_json:
        typer.echo(to_json(result, indent=2))
    else:
        typer.echo(f"reloaded: {result.get('summary', '')}")
        not_applied = result.get("daemon_not_applied") or []
        if not_applied:
            typer.echo(
                f"not applied: [daemon] {', '.join(not_applied)} "
                "(fixed at the daemon's start: `zskill down` then `zskill up`)"
            )
    if not result.get("ok", False):
        failed = [o["skill"] for o in result.get("skills", []) if not o.get("ok")]
        if not as_json:
            typer.echo(
                f"error: not applied to {', '.join(failed)} (see above); "
                "fix zskill.toml and reload again",
                err=True,
            )
        raise typer.Exit(EXIT_FAILED)
