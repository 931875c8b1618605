"""``zskill upgrade``, ``rollback`` and ``releases``: deploy a skill's new
version (or its previous release) live, with the rollout's steps printed as
they finish; exit 1 when it was rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import EXIT_FAILED, UsageError
from ..options import DEFAULT_CONFIG, ConfigOpt, JsonlOut, JsonOut, SkillArg, connect, load

if TYPE_CHECKING:
    from ..._client.sync import Client


def _deploy(
    op: str,
    skill: str,
    config: Path,
    *,
    from_dir: Path | None,
    as_json: bool,
    as_jsonl: bool = False,
    options: dict[str, Any] | None = None,
) -> None:
    """upgrade / rollback with live progress; exit 1 when rolled back.

    ``--json`` prints one document once it is over (the report, or the
    error, with every step's progress); ``--jsonl`` prints each step as it
    finishes, then the report (or the error) as the last line."""
    from ipc import UpgradeFailed

    from ..format import stderr_lines, to_json, tool_lines, upgrade_summary
    from ..render import ProgressPrinter, console

    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl: choose one")
    source: str | None = None
    if from_dir is not None:
        if not from_dir.is_dir():
            what = "does not exist" if not from_dir.exists() else "is not a directory"
            raise UsageError(f"--from {from_dir}: {what}")
        source = str(from_dir.expanduser().absolute())  # the daemon's cwd is not ours
    cfg = load(config)
    printer = ProgressPrinter(console())
    steps: list[dict[str, Any]] = []

    def on_progress(progress: Any) -> None:
        if not isinstance(progress, dict):
            return
        steps.append(progress)
        if as_jsonl:
            typer.echo(to_json(progress))
        elif not as_json:
            printer(progress)

    with connect(cfg) as client:
        try:
            if op == "upgrade":
                report = client.upgrade(
                    skill, from_dir=source, on_progress=on_progress, **(options or {})
                )
            else:
                report = client.rollback(skill, on_progress=on_progress, **(options or {}))
        except UpgradeFailed as exc:
            printer.close()
            serving = _still_serving(client, skill, exc.details)
            if as_json or as_jsonl:
                error = {"type": "UpgradeFailed", "message": exc.message, "details": exc.details}
                doc: dict[str, Any] = {"ok": False, "error": error, "serving": serving}
                if as_json:
                    doc["progress"] = steps
                typer.echo(to_json(doc, indent=2 if as_json else None))
            else:
                typer.secho(_failure_line(op, exc.message, exc.details), err=True, fg="red")
                for line in [*tool_lines(exc.details.get("tools")), *stderr_lines(exc.details)]:
                    typer.echo(line, err=True)
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
    if as_jsonl:
        typer.echo(to_json(report))
        return
    if as_json:
        typer.echo(to_json({**report, "progress": steps}, indent=2))
        return
    printer.replay(report)
    typer.echo(upgrade_summary(skill, report))
    for line in tool_lines(report.get("tools")):
        typer.echo(line)


def _failure_line(op: str, message: str, details: dict[str, Any]) -> str:
    """``upgrade failed at health: health hook returned False``."""
    step, reason = details.get("step"), details.get("reason")
    if reason:
        return f"{op} failed at {step}: {reason}" if step else f"{op} failed: {reason}"
    return f"{op} failed: {message}"


def _still_serving(client: Client, skill: str, details: dict[str, Any]) -> str:
    """What serves ``skill`` now, asked of the daemon after a failed upgrade."""
    from ipc import ZskillError

    from ..._status import SkillState

    try:
        status = next((s for s in client.list() if s.get("name") == skill), None)
    except ZskillError:
        status = None
    if status is None:
        old = details.get("old_version") or details.get("version")
        return f"{old} still serving" if old else f"{skill}: state unknown"
    if status.get("state") in (SkillState.RUNNING, SkillState.UPGRADING):
        return f"{status.get('version')} still serving"
    return f"{skill} is {status.get('state')}"


def upgrade(
    skill: SkillArg,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", metavar="DIR", help="Start the new version from DIR."),
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(
            "--canary",
            metavar="W1,W2,..",
            help="Move calls over step by step: percentages such as 5,25,100.",
        ),
    ] = None,
    step_s: Annotated[
        float | None, typer.Option("--step-s", help="Seconds each canary step lasts (30).")
    ] = None,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate", help="The canary's error rate may exceed stable's by this (0.02)."
        ),
    ] = None,
    max_p99_ratio: Annotated[
        float | None,
        typer.Option("--max-p99-ratio", help="The canary's p99 may be this times stable's (2)."),
    ] = None,
    allow_breaking: Annotated[
        bool,
        typer.Option("--allow-breaking", help="Upgrade even if the new tools break callers."),
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
    as_jsonl: JsonlOut = False,
) -> None:
    """Upgrade a skill live; exit 0 only when the new version serves.

    The new version starts beside the old one and must pass its health check;
    then calls switch to it and the old one drains. A failure before the switch
    rolls back: the old version keeps serving and the exit code is 1. Tools
    removed, new required arguments, removed or narrowed arguments are a
    breaking change: refused unless --allow-breaking. With --canary, both
    versions serve while the new one takes each share of calls in turn; a
    step whose error rate or p99 is worse than allowed rolls it back.
    """
    options: dict[str, Any] = {"allow_breaking": True} if allow_breaking else {}
    if canary is not None:
        options["canary"] = _canary_plan(canary, step_s, max_error_rate, max_p99_ratio)
    elif (step_s, max_error_rate, max_p99_ratio) != (None, None, None):
        raise UsageError("--step-s, --max-error-rate and --max-p99-ratio go with --canary")
    _deploy(
        "upgrade",
        skill,
        config,
        from_dir=from_dir,
        as_json=as_json,
        as_jsonl=as_jsonl,
        options=options,
    )


def _canary_plan(
    weights: str, step_s: float | None, max_error_rate: float | None, max_p99_ratio: float | None
) -> dict[str, Any]:
    try:
        parsed = [int(w.strip().rstrip("%")) for w in weights.split(",") if w.strip()]
    except ValueError:
        raise UsageError(f"--canary {weights}: give percentages such as 5,25,100") from None
    if not parsed or any(not 0 < w <= 100 for w in parsed) or parsed != sorted(set(parsed)):
        raise UsageError(f"--canary {weights}: rising percentages in 1..100, such as 5,25,100")
    plan: dict[str, Any] = {"weights": parsed}
    for key, value in (
        ("step_s", step_s),
        ("max_error_rate", max_error_rate),
        ("max_p99_ratio", max_p99_ratio),
    ):
        if value is not None:
            plan[key] = value
    return plan


def rollback(
    skill: SkillArg,
    to: Annotated[
        int | None,
        typer.Option("--to", metavar="RELEASE", help="Go to this kept release (see releases)."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
    as_jsonl: JsonlOut = False,
) -> None:
    """Go back to the skill's previous release (or to --to RELEASE), live."""
    if to is not None and to < 1:
        raise UsageError(f"--to {to}: a release number (see `zskill releases {skill}`)")
    options = {"to": to} if to is not None else None
    _deploy(
        "rollback",
        skill,
        config,
        from_dir=None,
        as_json=as_json,
        as_jsonl=as_jsonl,
        options=options,
    )


def scale(
    skill: SkillArg,
    instances: Annotated[int, typer.Argument(metavar="N", help="How many processes to run.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Run N processes of a skill sharing its calls; live, no call fails."""
    if instances < 1:
        raise UsageError(f"N must be at least 1 (got {instances})")
    cfg = load(config)
    with connect(cfg) as client:
        status = client.scale(skill, instances)
    from ..format import to_json

    if as_json:
        typer.echo(to_json(status, indent=2))
        return
    procs = status.get("instances") or []
    ready = [p for p in procs if p.get("state") == "ready"]
    pids = ", ".join(str(p.get("pid")) for p in ready)
    typer.echo(f"{skill}: {len(ready)} instances serving (pids {pids})")
    if len(procs) > len(ready):
        typer.echo(f"{len(procs) - len(ready)} draining")


def rollout(
    skill: SkillArg,
    promote: Annotated[
        bool, typer.Option("--promote", help="Give the canary every call now.")
    ] = False,
    pause: Annotated[bool, typer.Option("--pause", help="Hold the current weight.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Go on after --pause.")] = False,
    abort: Annotated[
        bool, typer.Option("--abort", help="Roll the canary back; stable keeps serving.")
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
) -> None:
    """Show a skill's rollout in progress, or steer its canary."""
    chosen = [
        a
        for a, on in (("promote", promote), ("pause", pause), ("resume", resume), ("abort", abort))
        if on
    ]
    if len(chosen) > 1:
        raise UsageError("give at most one of --promote, --pause, --resume, --abort")
    cfg = load(config)
    with connect(cfg) as client:
        view = client.rollout(skill, chosen[0] if chosen else None)
    from ..format import rollout_lines, to_json

    if as_json:
        typer.echo(to_json(view, indent=2))
        return
    for line in rollout_lines(skill, view, chosen[0] if chosen else None):
        typer.echo(line)


def releases(skill: SkillArg, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOut = False) -> None:
    """The releases of a skill kept for rollback, newest first."""
    cfg = load(config)
    with connect(cfg) as client:
        kept = client.releases(skill)
    if as_json:
        from ..format import to_json

        typer.echo(to_json(kept, indent=2))
        return
    if not kept:
        typer.echo(f"no releases kept for {skill}")
        return
    from ..render import console, releases_table

    out = console()
    out.print(releases_table(kept, width=out.width))
