"""Reading and steering tasks from outside the loop (the CLI's side).

A ``TaskStore`` talks to the task database with a DBOS client: it lists
tasks, reads a task's trajectory from its checkpointed steps (``records``),
cancels tasks and hands interrupted ones back to a queue. It registers no
workflow and runs none, so ``zskill tasks`` never takes over a task.

Task states, from DBOS's workflow status and the liveness of its process:

    queued       waiting on a queue for a process to take it
    running      its process is alive
    interrupted  its process is gone; resume it (zskill task resume ID)
    done         finished: its output is recorded
    failed       ended in an error (or resumed too many times)
    cancelled    cancelled (zskill task cancel ID); resuming it continues it
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .engine import APP_NAME, TASK_WORKFLOW, check_url
from .errors import DatabaseError, TaskNotFound
from .executors import Executors
from .records import MODEL_STEP, TOOL_STEP, ModelStep, ToolStep

__all__ = ["Step", "TaskInfo", "TaskStore"]

_STATES = {
    "ENQUEUED": "queued",
    "DELAYED": "queued",
    "SUCCESS": "done",
    "ERROR": "failed",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "failed",
    "CANCELLED": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of a trajectory: a model request or a tool call."""

    number: int  # DBOS's step id within the task
    kind: str  # "model" or "tool"
    name: str  # the tool's skill__tool, or the model's name
    detail: str  # what the model asked for, or the tool's result / error
    outcome: str  # ok, error, unknown
    loop_version: str
    skill_version: str | None
    duration_s: float
    started: float | None  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "kind": self.kind,
            "name": self.name,
            "detail": self.detail,
            "outcome": self.outcome,
            "loop_version": self.loop_version,
            "skill_version": self.skill_version,
            "duration_s": round(self.duration_s, 6),
            "started": _iso(self.started),
        }


@dataclass(frozen=True, slots=True)
class TaskInfo:
    id: str
    state: str
    steps: int
    started: float | None
    updated: float | None
    loop_version: str
    agent: str
    prompt: str
    output: Any
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "steps": self.steps,
            "started": _iso(self.started),
            "updated": _iso(self.updated),
            "loop_version": self.loop_version,
            "agent": self.agent,
            "prompt": self.prompt,
            "output": self.output if _plain(self.output) else repr(self.output),
            "error": self.error,
        }


class TaskStore:
    def __init__(self, url: str) -> None:
        from dbos import DBOSClient

        self.url = check_url(url)
        try:
            self.client = DBOSClient(
                system_database_url=self.url,
                application_name=APP_NAME,
                retry_connection_errors=False,
            )
            self.executors = Executors(self.url, None)
        except Exception as exc:
            raise DatabaseError(f"cannot open the task database {self.url}: {exc}") from exc

    def close(self) -> None:
        self.client.destroy()
        self.executors.engine.dispose()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------

    def list(self, limit: int = 100) -> builtins.list[TaskInfo]:
        with _mapped():
            found = self.client.list_workflows(
                name=TASK_WORKFLOW, limit=limit, sort_desc=True, load_output=True
            )
            return [self._info(w, self.trajectory(w.workflow_id)) for w in found]

    def get(self, task_id: str) -> TaskInfo:
        with _mapped():
            found = self.client.list_workflows(workflow_ids=[task_id], name=TASK_WORKFLOW)
        if not found:
            raise TaskNotFound(f"no task {task_id!r} in {self.url}")
        return self._info(found[0], self.trajectory(task_id))

    def trajectory(self, task_id: str) -> builtins.list[Step]:
        with _mapped():
            raw = self.client.list_workflow_steps(task_id)
        steps = []
        for s in raw:
            step = _step(s)
            if step is not None:
                steps.append(step)
        return steps

    def _info(self, w: Any, steps: builtins.list[Step]) -> TaskInfo:
        args = (w.input or {}).get("args")
        prompt, info = (*args, "", {})[:2] if isinstance(args, tuple) else ("", {})
        info = info if isinstance(info, dict) else {}
        state = _STATES.get(w.status)
        if state is None:  # PENDING: running, unless its process is gone
            state = "running" if self.executors.alive(w.executor_id) else "interrupted"
        last_version = steps[-1].loop_version if steps else str(info.get("loop_version", ""))
        return TaskInfo(
            id=w.workflow_id,
            state=state,
            steps=len(steps),
            started=w.created_at / 1000 if w.created_at else None,
            updated=w.updated_at / 1000 if w.updated_at else None,
            loop_version=last_version,
            agent=str(info.get("agent", "")),
            prompt=str(prompt),
            output=w.output,
            error=repr(w.error) if w.error is not None else None,
        )

    # --- steering --------------------------------------------------------------

    def cancel(self, task_id: str) -> TaskInfo:
        info = self.get(task_id)
        if info.state in ("done", "failed"):
            return info
        with _mapped():
            self.client.cancel_workflow(task_id)
        return self.get(task_id)

    def submit(self, prompt: str, task_id: str, agent: str) -> None:
        """Queue a task for the loop workers (``agent``: their import string)."""
        from .engine import CHECKPOINT_FORMAT, TASK_QUEUE

        options: Any = {
            "queue_name": TASK_QUEUE,
            "workflow_name": TASK_WORKFLOW,
            "workflow_id": task_id,
            "app_version": CHECKPOINT_FORMAT,
        }
        with _mapped():
            self.client.enqueue(options, prompt, {"agent": agent, "loop_version": ""})

    def requeue(self, task_id: str, queue: str | None = None) -> None:
        """Put an interrupted or cancelled task back on ``queue`` for a
        process to take (DBOS admits one)."""
        with _mapped():
            self.client.resume_workflow(task_id, queue_name=queue)


def _step(s: Any) -> Step | None:
    out = s.get("output")
    started = s.get("started_at_epoch_ms")
    started_s = started / 1000 if started else None
    name = s.get("function_name")
    if name == MODEL_STEP and isinstance(out, ModelStep):
        response = out.response if isinstance(out.response, dict) else {}
        return Step(
            number=s["function_id"],
            kind="model",
            name=str(response.get("model_name") or "model"),
            detail=_asked(response),
            outcome="ok",
            loop_version=out.loop_version,
            skill_version=None,
            duration_s=out.duration_s,
            started=started_s,
        )
    if name == TOOL_STEP and isinstance(out, ToolStep):
        return Step(
            number=s["function_id"],
            kind="tool",
            name=out.name,
            detail=_short(out.value),
            outcome=out.outcome,
            loop_version=out.loop_version,
            skill_version=out.skill_version,
            duration_s=out.duration_s,
            started=started_s,
        )
    if name in (MODEL_STEP, TOOL_STEP) and s.get("error") is not None:
        return Step(
            number=s["function_id"],
            kind="model" if name == MODEL_STEP else "tool",
            name=name,
            detail=_short(repr(s["error"])),
            outcome="error",
            loop_version="",
            skill_version=None,
            duration_s=0.0,
            started=started_s,
        )
    return None


def _asked(response: dict[str, Any]) -> str:
    """What a model response asked for: its tool calls, else its text."""
    parts = [p for p in response.get("parts") or [] if isinstance(p, dict)]
    calls = [
        f"{p.get('tool_name')}({_short(_args(p.get('args')), 60)})"
        for p in parts
        if p.get("part_kind") == "tool-call"
    ]
    if calls:
        return "call " + ", ".join(calls)
    text = " ".join(str(p.get("content", "")) for p in parts if p.get("part_kind") == "text")
    return "answer " + _short(text)


def _args(args: Any) -> str:
    if isinstance(args, str):
        return args
    return json.dumps(args, separators=(",", ":"))


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="milliseconds")


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """DBOS's and the database's errors as ours."""
    import sqlalchemy as sa

    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"task database: {exc}") from exc
