"""``zskill list``, ``call``, ``start``, ``stop`` and ``restart``: the skills
of a running daemon, and one call to a tool."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ..errors import EXIT_FAILED, UsageError
from ..options import DEFAULT_CONFIG, ConfigOpt, JsonOut, SkillArg, connect, load, seconds

if TYPE_CHECKING:
    from ..._status import SkillStatus


def list_skills(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOut = False) -> None:
    """Show every skill: state, version, pid, uptime, load."""
    cfg = load(config)
    with connect(cfg) as client:
        statuses = cast("list[SkillStatus]", client.list())
    if as_json:
        from ..format import to_json

        typer.echo(to_json(statuses, indent=2))
        return
    from ..render import console, list_notes, list_table, natural_width

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
        out.print(note, soft_wrap=not out.is_terminal)  # piped: one line each, for grep


def tools(
    skill: Annotated[
        str | None,
        typer.Argument(metavar="[SKILL]", help="Only this skill's tools (default: every skill)."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Each running skill's tools: description and arguments (their JSON Schema)."""
    cfg = load(config)
    with connect(cfg) as client:
        found = client.tools(skill)
        statuses = cast("list[SkillStatus]", client.list())
    if as_json:
        from ..format import to_json

        typer.echo(to_json(found, indent=2))
        return
    from ..tools import tools_text

    if not found:
        what = f"{skill} is not running" if skill else f"no skill of {cfg.path} is running"
        typer.echo(f"no tools: {what}")
        return
    versions = {s["name"]: s["version"] for s in statuses if s.get("version")}
    typer.echo("\n".join(tools_text(found, versions)))


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
        float | None,
        typer.Option(metavar="S", help="Seconds the call may take.", callback=seconds),
    ] = None,
    show_version: Annotated[
        bool, typer.Option("--show-version", help="Also print (to stderr) who served the call.")
    ] = False,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Idempotency key: the tool runs at most once per key; "
            "a retry gets the first call's outcome.",
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="ID",
            help="While a canary runs, the calls of a session stay on one version.",
        ),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Call a tool and print its result (text as is, anything else as JSON).
    On a terminal, the progress the tool reports is drawn as a bar on
    stderr; Ctrl-C cancels the call (the skill is told to stop)."""
    from ..format import human_elapsed, to_json
    from ..progress import CallProgress

    arguments = _parse_args(args)
    if key is not None and not key:
        raise UsageError("--key: an idempotency key cannot be empty")
    if session is not None and not session:
        raise UsageError("--session: a session id cannot be empty")
    cfg = load(config)
    bar = CallProgress(f"{skill}.{tool}")
    try:
        with connect(cfg) as client, bar:
            if bar.enabled:
                result = client.call_detailed(
                    skill,
                    tool,
                    arguments,
                    timeout=timeout,
                    key=key,
                    on_progress=bar,
                    session=session,
                )
            else:  # nobody to show progress to: the skill need not send it
                result = client.call_detailed(
                    skill, tool, arguments, timeout=timeout, key=key, session=session
                )
    except KeyboardInterrupt:
        # Client.call sent the cancel on its way out; the bar is gone by now.
        typer.echo(f"zskill: call to {skill}.{tool} cancelled (interrupted)", err=True)
        raise typer.Exit(130) from None
    value = result.value
    typer.echo(value if isinstance(value, str) else to_json(value, indent=2))
    if show_version:
        typer.echo(f"{skill} {result.version} in {human_elapsed(result.elapsed_s)}", err=True)


DONE = {"start": "started", "stop": "stopped", "restart": "restarted"}


def _lifecycle(op: str, skill: str, config: Path, as_json: bool) -> None:
    from ipc import ControlError

    from ..format import status_line, to_json

    cfg = load(config)
    with connect(cfg) as client:
        ops: dict[str, Callable[[str], dict[str, Any]]] = {
            "start": client.start,
            "stop": client.stop,
            "restart": client.restart,
        }
        t0 = time.monotonic()
        try:
            status = cast("SkillStatus", ops[op](skill))
        except ControlError as exc:
            if not as_json:
                raise  # one line, and the new process's stderr tail (app._report)
            error = {"type": type(exc).__name__, "message": exc.message, "details": exc.details}
            typer.echo(to_json({"ok": False, "error": error}, indent=2))
            raise typer.Exit(EXIT_FAILED) from None
        elapsed_s = time.monotonic() - t0
    if as_json:
        typer.echo(to_json(status, indent=2))
    else:
        typer.echo(status_line(DONE[op], skill, status, elapsed_s))


def start(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Start a stopped skill; returns once it serves."""
    _lifecycle("start", skill, config, as_json)


def stop(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Stop a skill: it drains its calls, then exits."""
    _lifecycle("stop", skill, config, as_json)


def restart(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Restart a skill; returns once the new process serves."""
    _lifecycle("restart", skill, config, as_json)
