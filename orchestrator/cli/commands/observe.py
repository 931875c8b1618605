"""``zskill logs``, ``events`` and ``dashboard``: what the skills printed, what
happened to them, and a live view of both."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..options import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonlOut,
    SkillArg,
    connect,
    load,
    seconds,
)


def _json_mode(as_json: bool, as_jsonl: bool, follow: bool) -> None:
    """--json is one document (an array), so it cannot follow; --jsonl can."""
    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl: choose one")
    if as_json and follow:
        raise UsageError("--json prints one document and cannot follow; use --jsonl with -f")


def logs(
    skill: SkillArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", help="Lines of history.", min=0)
    ] = 50,
    err: Annotated[bool, typer.Option("--err", help="Only stderr.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored records as one JSON array.")
    ] = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Print the stored JSON lines (also with -f).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Only newer lines: a duration (30s, 10m, 2h, 1d), a clock time "
            "(10:30), a date or both ('2026-11-30 10:30'), ISO 8601.",
        ),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Print a skill's output (all its versions), read from the run dir."""
    from .. import logs as cl
    from ..scaffold import check_name

    _json_mode(as_json, as_jsonl, follow)
    since_t = None
    if since is not None:
        try:
            since_t = cl.parse_since_time(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    check_name(skill)
    cfg = load(config)
    path = cl.log_path(cfg.run_dir, skill)
    if skill not in cfg.skills and not path.exists() and not cl.rotated_files(path):
        raise UsageError(f"no skill {skill!r} in {cfg.path}, and no logs of it in {path.parent}")
    keep = cl.record_filter(err_only=err, since_t=since_t)
    color = not (as_json or as_jsonl) and sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def emit(rec: cl.LogRecord) -> None:
        sys.stdout.write((rec.raw if as_jsonl else cl.format_record(rec, color=color)) + "\n")

    follower = cl.LogFollower(path)
    try:
        if as_json:
            import json

            records = [json.loads(rec.raw) for rec in cl.history(follower, lines, keep)]
            sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
            return
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as one JSON array.")
    ] = False,
    as_jsonl: JsonlOut = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Lifecycle and deployment history; -f to follow live."""
    from ..format import event_line, to_json

    _json_mode(as_json, as_jsonl, follow)

    def emit(event: dict[str, Any]) -> None:
        typer.echo(to_json(event) if as_jsonl else event_line(event))

    cfg = load(config)
    with connect(cfg) as client:
        if as_json:
            typer.echo(to_json(client.events(skill, limit=lines) if lines else [], indent=2))
            return
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


def dashboard(
    config: ConfigOpt = DEFAULT_CONFIG,
    interval: Annotated[
        float,
        typer.Option(
            metavar="S", min=0.1, help="Seconds between questions to the daemon.", callback=seconds
        ),
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
    from ..dashboard.app import run
    from ..render import console

    cfg = load(config)
    client = connect(cfg)
    run(cfg, client, console(), interval_s=interval, once=once)
