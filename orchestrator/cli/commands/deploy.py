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
) -> None:
    """upgrade / rollback with live progress; exit 1 when rolled back.

    ``--json`` prints one document once it is over (the report, or the
    error, with every step's progress); ``--jsonl`` prints each step as it
    finishes, then the report (or the error) as the last line."""
    from ipc import UpgradeFailed

    from ..format import stderr_lines, to_json, upgrade_summary
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
                report = client.upgrade(skill, from_dir=source, on_progress=on_progress)
            else:
                report = client.rollback(skill, on_progress=on_progress)
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
                for line in stderr_lines(exc.details):
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
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
    as_jsonl: JsonlOut = False,
) -> None:
    """Upgrade a skill live; exit 0 only when the new version serves.

    The new version starts beside the old one and must pass its health check;
    then calls switch to it and the old one drains. A failure before the switch
    rolls back: the old version keeps serving and the exit code is 1.
    """
    _deploy("upgrade", skill, config, from_dir=from_dir, as_json=as_json, as_jsonl=as_jsonl)


def rollback(
    skill: SkillArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOut = False,
    as_jsonl: JsonlOut = False,
) -> None:
    """Go back to the skill's previous release, live."""
    _deploy("rollback", skill, config, from_dir=None, as_json=as_json, as_jsonl=as_jsonl)


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
