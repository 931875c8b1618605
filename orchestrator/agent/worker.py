"""A loop worker: takes tasks from the queue until told to retire.

    python -m orchestrator.agent.worker --config zskill.toml [MODULE:AGENT]

Any number of workers, on any number of hosts, share one task database
(PostgreSQL beyond one machine): DBOS hands each queued task to exactly one
of them. Every ``SWEEP_S`` a worker also looks for workers that died
(``executors``): the one that claims a dead worker's record re-enqueues its
unfinished tasks, which live workers then resume from their last completed
step (tool calls keyed, so none happens twice).

SIGTERM retires a worker (a loop upgrade started a new version beside it):
it takes no new step (``gate``), waits for the steps in flight, and exits,
leaving its tasks to the live workers, on whatever loop version they run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import gate
from .engine import TASK_QUEUE, TASK_WORKFLOW, Engine

__all__ = ["SWEEP_S", "main", "sweep"]

SWEEP_S = 0.5
RETIRE_WAIT_S = 60.0


def sweep(engine: Engine) -> list[str]:
    """Re-enqueue the tasks of dead workers this worker claims; their ids."""
    from dbos import DBOS

    resumed = []
    for executor_id in engine.executors.dead():
        if not engine.executors.forget(executor_id):
            continue  # another worker claimed it first
        for task in DBOS.list_workflows(
            status="PENDING", executor_id=executor_id, name=TASK_WORKFLOW, load_input=False
        ):
            DBOS.resume_workflow(task.workflow_id, queue_name=TASK_QUEUE)
            resumed.append(task.workflow_id)
    return resumed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.agent.worker")
    parser.add_argument("agent", nargs="?", help="MODULE:AGENT (default: [agent] agent)")
    parser.add_argument("--config", default=os.environ.get("ZSKILL_CONFIG", "zskill.toml"))
    opts = parser.parse_args(argv)

    from .._config import load
    from .errors import AgentError
    from .loader import load_agent

    try:
        config = load(Path(opts.config))
        spec = opts.agent or config.agent.agent
        if not spec:
            print("error: no agent: pass MODULE:AGENT or set [agent] agent", file=sys.stderr)
            return 2
        durable = load_agent(spec, config)
        engine = durable.launch(queues=(TASK_QUEUE,))
    except AgentError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    retiring = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: retiring.set())
    signal.signal(signal.SIGINT, lambda *_: retiring.set())
    print(
        f"worker {engine.identity.executor_id}: {spec}, loop version {durable.version}",
        flush=True,
    )
    while not retiring.wait(SWEEP_S):
        for task_id in sweep(engine):
            print(f"resuming {task_id} (its worker died)", flush=True)

    # Retire: no step starts from now on; let the ones in flight finish.
    gate.retire()
    engine.executors.retire()
    deadline = time.monotonic() + RETIRE_WAIT_S
    while gate.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("retired: unfinished tasks go on in the live workers", flush=True)
    # Without cleanup: our record stays, and our tasks with it, for a live
    # worker to claim once this process is gone.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
