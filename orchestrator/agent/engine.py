"""DBOS, set up once per process for the agent loop.

DBOS is a process-wide singleton: one system database, one executor id, one
set of registered workflows. This module owns it: the database URL (SQLite
under the run dir unless ``[agent] database_url`` says otherwise), a unique
executor id per process, and the launch, so every entry point (a
``DurableAgent`` run, a loop worker, the CLI) gets the same behaviour.

Two choices made deliberately:

- DBOS's *application version* is fixed (``CHECKPOINT_FORMAT``), not a hash of
  the code: DBOS dequeues and recovers a workflow only on the version that
  started it, and a task started on loop version N must resume on N+1. The
  loop's own version is recorded with each step instead (``records``).
- Every process has its own executor id (``host:pid:token``), so DBOS's
  start-up recovery never takes a task another live process is running; who
  takes over a dead process's tasks is decided by ``executors``.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatabaseError

if TYPE_CHECKING:
    from .._config import Config

__all__ = [
    "APP_NAME",
    "CHECKPOINT_FORMAT",
    "TASK_QUEUE",
    "TASK_WORKFLOW",
    "Engine",
    "check_url",
    "database_url",
]

APP_NAME = "zskill_agent"
CHECKPOINT_FORMAT = "zskill-agent-1"
"""DBOS's application version: the shape of our checkpoints, shared by every loop version."""
TASK_WORKFLOW = "zskill.task"
"""The DBOS workflow of every task (one agent per task database)."""
TASK_QUEUE = "zskill_tasks"
"""The queue loop workers take tasks from."""
DATABASE_FILE = "agent.sqlite"


def database_url(config: Config) -> str:
    """The database of ``config``'s tasks: its ``[agent] database_url``, or
    SQLite in its run dir."""
    if config.agent.database_url:
        return check_url(config.agent.database_url)
    return f"sqlite:///{config.run_dir / DATABASE_FILE}"


def check_url(url: str) -> str:
    """``url`` if it names a database DBOS can use; DatabaseError otherwise."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
        raise DatabaseError(
            f"database_url {_redact(url)!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    return url


def _redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    head, sep, tail = url.partition("://")
    if "@" in tail:
        creds, _, host = tail.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{head}{sep}{user}:***@{host}" if ":" in creds else url
    return url


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this process is in the task database."""

    executor_id: str
    host: str
    pid: int


def _identity() -> Identity:
    host = socket.gethostname()
    pid = os.getpid()
    return Identity(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid)


class Engine:
    """The launched DBOS of this process (at most one, for one database)."""

    _current: Engine | None = None
    _lock = threading.Lock()

    def __init__(self, url: str, identity: Identity) -> None:
        self.url = url
        self.identity = identity

    @classmethod
    def launch(cls, url: str, *, queues: tuple[str, ...] = (), concurrency: int = 4) -> Engine:
        """Launch DBOS on ``url`` (once per process); take tasks from
        ``queues`` (workers do; a process running its own tasks does not),
        at most ``concurrency`` at once."""
        url = check_url(url)
        with cls._lock:
            if cls._current is not None:
                if cls._current.url != url:
                    raise DatabaseError(
                        f"this process already runs tasks on {_redact(cls._current.url)}; "
                        "one database per process"
                    )
                return cls._current
            engine = cls(url, _identity())
            engine._start(queues, concurrency)
            cls._current = engine
            atexit.register(engine.close)
            return engine

    def _start(self, queues: tuple[str, ...], concurrency: int) -> None:
        from dbos import DBOS, DBOSConfig

        if url_is_sqlite(self.url):
            path = Path(self.url.split(":///", 1)[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_ahead(path)
        config: DBOSConfig = {
            "name": APP_NAME,
            "system_database_url": self.url,
            "application_version": CHECKPOINT_FORMAT,
            "executor_id": self.identity.executor_id,
            "log_level": os.environ.get("ZSKILL_DBOS_LOG_LEVEL", "WARNING"),
        }
        logging.getLogger("dbos").setLevel(config["log_level"] or "WARNING")
        try:
            DBOS(config=config)
            DBOS.listen_queues(list(queues))
            DBOS.launch()
            for name in queues:
                DBOS.register_queue(
                    name,
                    worker_concurrency=concurrency,
                    polling_interval_sec=0.2,
                    on_conflict="always_update",
                )
        except Exception as exc:
            raise DatabaseError(
                f"cannot open the task database {_redact(self.url)}: {exc}"
            ) from exc
        from .executors import Executors

        self.executors = Executors(self.url, self.identity)
        self.executors.start()

    def close(self) -> None:
        """Stop DBOS and say this process is gone (its running tasks are
        left for another process to resume)."""
        from dbos import DBOS

        with Engine._lock:
            if Engine._current is not self:
                return
            Engine._current = None
        self.executors.stop()
        DBOS.destroy(workflow_completion_timeout_sec=0)


def _write_ahead(path: Path) -> None:
    """Every connection to the task database ``path`` in WAL mode with
    synchronous=NORMAL: a checkpoint is one append, fsynced at WAL
    checkpoints instead of three fsyncs per commit. A killed process loses
    nothing it committed (the OS has it); a power cut may lose the last few
    steps, which then run again (tool calls stay keyed), never a corrupt file.
    """
    import sqlalchemy as sa
    from sqlalchemy import event

    target = str(path.resolve())

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            main = next(
                (r[2] for r in dbapi_conn.execute("PRAGMA database_list") if r[1] == "main"), ""
            )
            if main and str(Path(main).resolve()) == target:
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    event.listen(sa.engine.Engine, "connect", on_connect)


def url_is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")
