"""``zskill agent run|submit|worker``, ``zskill tasks`` and ``zskill task
show|resume|cancel``: the core agent loop's tasks (the ``zskill[agent]``
extra, imported only here, inside the commands).

Bad input exits 2 with the reason: an import string that does not resolve,
a task id that does not exist, a database URL that is wrong; a task that
fails exits 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CliError, UsageError
from ..options import DEFAULT_CONFIG, ConfigOpt, JsonOut, load

if TYPE_CHECKING:
    from ..._config import Config
    from ...agent.tasks import Step, TaskInfo, TaskStore

TaskIdArg = Annotated[str, typer.Argument(metavar="ID", help="The task's id.")]


@contextlib.contextmanager
def _agent_errors() -> Iterator[None]:
    """The agent loop's errors as the CLI's: bad input exits 2, a failed task 1."""
    try:
        import dbos  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the agent loop needs the agent extra: pip install 'zskill[agent]' ({exc})"
        ) from exc
    from ...agent.errors import AgentError, TaskFailed

    try:
        yield
    except TaskFailed as exc:
        raise CliError(exc.message) from exc
    except AgentError as exc:
        raise UsageError(exc.message) from exc


def local_time(t: float) -> str:
    from ..format import local_time as fmt

    return fmt(t)


def to_json(value: Any, *, indent: int | None = None) -> str:
    from ..format import to_json as dump

    return dump(value, indent=indent)


def _store(cfg: Config) -> TaskStore | None:
    """The task database of ``cfg``, or None if no task was ever run there."""
    from ...agent.engine import database_url, url_is_sqlite
    from ...agent.tasks import TaskStore

    url = database_url(cfg)
    if url_is_sqlite(url) and not Path(url.split(":///", 1)[1]).exists():
        return None
    return TaskStore(url)


# --- zskill agent ... -----------------------------------------------------------


def run(
    agent: Annotated[
        str,
        typer.Argument(metavar="MODULE:AGENT", help="The agent, e.g. myagent:agent."),
    ],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The task.")],
    task_id: Annotated[
        str | None,
        typer.Option("--task-id", metavar="ID", help="The task's id (an existing one resumes)."),
    ] = None,
    as_json: JsonOut = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Run a task with an agent (or resume it, given an existing --task-id)."""
    cfg = load(config, strict=True)
    with _agent_errors():
        from ...agent.durable import new_task_id
        from ...agent.loader import load_agent

        durable = load_agent(agent, cfg)
        tid = task_id or new_task_id()
        typer.echo(f"task {tid} (loop version {durable.version})", err=True)
        result = durable.run_sync(prompt, task_id=tid)
    if as_json:
        typer.echo(to_json({"id": result.task_id, "output": _jsonable(result.output)}))
    else:
        typer.echo(result.output)


def submit(
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The task.")],
    task_id: Annotated[
        str | None, typer.Option("--task-id", metavar="ID", help="The task's id.")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Queue a task for the loop workers ([agent] agent runs it); print its id."""
    from ...agent.engine import check_url, database_url

    cfg = load(config, strict=True)
    if not cfg.agent.agent:
        raise UsageError(f'{cfg.path}: set [agent] agent = "MODULE:AGENT" for the workers')
    with _agent_errors():
        from ...agent.tasks import TaskStore

        tid = task_id or f"t-{os.urandom(4).hex()}"
        with TaskStore(check_url(database_url(cfg))) as store:
            store.submit(prompt, tid, cfg.agent.agent)
    typer.echo(tid)


def worker(
    agent: Annotated[
        str | None,
        typer.Argument(metavar="[MODULE:AGENT]", help="The agent (default: [agent] agent)."),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Run a loop worker: take queued tasks until SIGTERM retires it."""
    with _agent_errors():
        from ...agent.worker import main as run_worker

        code = run_worker([*([agent] if agent else []), "--config", str(config)])
    raise typer.Exit(code)


# --- zskill tasks, zskill task ... -------------------------------------------------


def tasks(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N tasks.")] = 50,
    as_json: JsonOut = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """List the agent's tasks: id, state, steps, started, updated, loop version."""
    cfg = load(config, strict=True)
    with _agent_errors():
        store = _store(cfg)
        found = [] if store is None else store.list(limit)
        if store is not None:
            store.close()
    if as_json:
        typer.echo(to_json([t.to_json() for t in found], indent=2))
        return
    if not found:
        typer.echo("no tasks")
        return
    rows: list[tuple[str, ...]] = [("ID", "STATE", "STEPS", "STARTED", "UPDATED", "LOOP")]
    rows += [
        (
            t.id,
            t.state,
            str(t.steps),
            local_time(t.started) if t.started else "-",
            local_time(t.updated) if t.updated else "-",
            t.loop_version or "-",
        )
        for t in found
    ]
    _table(rows)


def show(task_id: TaskIdArg, as_json: JsonOut = False, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """A task's trajectory: each model step and tool call, who served it, how long, outcome."""
    cfg = load(config, strict=True)
    with _agent_errors():
        info, steps = _task(cfg, task_id)
    if as_json:
        body = info.to_json()
        body["trajectory"] = [s.to_json() for s in steps]
        typer.echo(to_json(body, indent=2))
        return
    typer.echo(
        f"task {info.id}: {info.state}, {info.steps} steps, loop version {info.loop_version}"
    )
    typer.echo(f"prompt: {info.prompt}")
    _table(_trajectory_rows(steps))
    if info.state == "done":
        typer.echo(f"output: {info.output}")
    elif info.error:
        typer.echo(f"error: {info.error}")


def resume(task_id: TaskIdArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Resume an interrupted or cancelled task from its last completed step."""
    cfg = load(config, strict=True)
    with _agent_errors():
        from ...agent.loader import load_agent

        info, _ = _task(cfg, task_id)
        spec = info.agent or cfg.agent.agent
        if not spec:
            raise UsageError(
                f"task {task_id} names no agent to resume it with: "
                f"zskill agent run MODULE:AGENT PROMPT --task-id {task_id}"
            )
        durable = load_agent(spec, cfg)
        typer.echo(
            f"task {task_id}: {info.state}, resuming on loop version {durable.version}", err=True
        )
        result = durable.run_sync(info.prompt, task_id=task_id)
    typer.echo(result.output)


def cancel(task_id: TaskIdArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Cancel a task: it stops before its next step (zskill task resume continues it)."""
    cfg = load(config, strict=True)
    with _agent_errors():
        store = _existing_store(cfg, task_id)
        try:
            before = store.get(task_id)
            after = store.cancel(task_id)
        finally:
            store.close()
    if before.state in ("done", "failed"):
        raise CliError(f"task {task_id} is already {before.state}")
    typer.echo(f"task {task_id}: {after.state}")


# --- helpers -------------------------------------------------------------------------


def _existing_store(cfg: Config, task_id: str) -> TaskStore:
    from ...agent.errors import TaskNotFound

    store = _store(cfg)
    if store is None:
        raise TaskNotFound(f"no task {task_id!r}: no task has run with {cfg.path}")
    return store


def _task(cfg: Config, task_id: str) -> tuple[TaskInfo, list[Step]]:
    store = _existing_store(cfg, task_id)
    try:
        info = store.get(task_id)
        return info, store.trajectory(task_id)
    finally:
        store.close()


def _trajectory_rows(steps: list[Step]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("STEP", "KIND", "NAME", "SERVED BY", "TOOK", "OUTCOME", "DETAIL")
    ]
    for s in steps:
        served = f"skill {s.skill_version}" if s.skill_version else ""
        loop = f"loop {s.loop_version}"
        rows.append(
            (
                str(s.number),
                s.kind,
                s.name,
                f"{served}, {loop}" if served else loop,
                f"{s.duration_s * 1000:.1f} ms",
                s.outcome,
                s.detail,
            )
        )
    return rows


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)]
        typer.echo("  ".join([*cells, r[-1]]).rstrip())


def _jsonable(value: Any) -> Any:
    return (
        value
        if value is None or isinstance(value, (str, int, float, bool, list, dict))
        else repr(value)
    )
