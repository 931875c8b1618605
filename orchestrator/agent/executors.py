"""Which processes running tasks are alive: a small table beside DBOS's.

Each process that runs tasks (a ``DurableAgent`` run, a loop worker) has a
row: its executor id, host, pid, process start time and a heartbeat renewed
every ``HEARTBEAT_S``. A process on this host is alive while its pid runs
with the same start time (known at once after a SIGKILL, no timeout to wait
out); one on another host while its heartbeat is younger than ``STALE_S``.
A process that exits cleanly deletes its row.

A task whose executor is not alive is an orphan: whoever resumes it first
(``DurableAgent.run`` with its id, ``zskill task resume``, a worker's sweep)
re-enqueues it through DBOS, which lets exactly one process dequeue it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
import sqlalchemy as sa

if TYPE_CHECKING:
    from .engine import Identity

__all__ = ["HEARTBEAT_S", "STALE_S", "Executors", "sa_url"]

HEARTBEAT_S = 1.0
STALE_S = 5.0

_meta = sa.MetaData()
TABLE = sa.Table(
    "zskill_executors",
    _meta,
    sa.Column("executor_id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_s", sa.Float, nullable=False),
    sa.Column("heartbeat_s", sa.Float, nullable=False),
    sa.Column("loop_version", sa.String(100), nullable=False, default=""),
    sa.Column("retiring", sa.Boolean, nullable=False, default=False),
)


def sa_url(url: str) -> str:
    """``url`` for SQLAlchemy: PostgreSQL through psycopg 3 (what DBOS uses)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _started_s(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class Executors:
    """This process's row, kept fresh by a thread, and the liveness of others."""

    def __init__(self, url: str, me: Identity | None) -> None:
        self.engine = sa.create_engine(sa_url(url))
        self.me = me
        self.loop_version = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _meta.create_all(self.engine, checkfirst=True)

    # --- this process ----------------------------------------------------------

    def start(self) -> None:
        assert self.me is not None
        started = _started_s(self.me.pid) or time.time()
        with self.engine.begin() as c:
            c.execute(TABLE.delete().where(TABLE.c.executor_id == self.me.executor_id))
            c.execute(
                TABLE.insert().values(
                    executor_id=self.me.executor_id,
                    host=self.me.host,
                    pid=self.me.pid,
                    started_s=started,
                    heartbeat_s=time.time(),
                    loop_version=self.loop_version,
                    retiring=False,
                )
            )
        self._thread = threading.Thread(target=self._beat, name="zskill-heartbeat", daemon=True)
        self._thread.start()

    def set_loop_version(self, version: str) -> None:
        self.loop_version = version
        self._update(loop_version=version)

    def retire(self) -> None:
        """Say this process takes no new task (a loop upgrade replaced it)."""
        self._update(retiring=True)

    def _update(self, **values: Any) -> None:
        if self.me is None:
            return
        with self.engine.begin() as c:
            c.execute(
                TABLE.update().where(TABLE.c.executor_id == self.me.executor_id).values(**values)
            )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            # The database away for a moment: the next beat retries.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._update(heartbeat_s=time.time())

    def stop(self) -> None:
        self._stop.set()
        if self.me is not None:
            try:
                with self.engine.begin() as c:
                    c.execute(TABLE.delete().where(TABLE.c.executor_id == self.me.executor_id))
            except sa.exc.SQLAlchemyError:
                pass  # it will look dead by its heartbeat instead
        self.engine.dispose()

    # --- the others ------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.select(TABLE))]

    def alive(self, executor_id: str | None) -> bool:
        """Whether the process ``executor_id`` may still be running a task."""
        if executor_id is None:
            return False
        if self.me is not None and executor_id == self.me.executor_id:
            return True
        with self.engine.connect() as c:
            row = c.execute(sa.select(TABLE).where(TABLE.c.executor_id == executor_id)).first()
        return row is not None and self._row_alive(dict(row._mapping))

    def _row_alive(self, row: dict[str, Any]) -> bool:
        import socket

        if row["host"] == socket.gethostname():
            started = _started_s(int(row["pid"]))
            return started is not None and abs(started - float(row["started_s"])) < 1.0
        return time.time() - float(row["heartbeat_s"]) < STALE_S

    def dead(self) -> list[str]:
        """Executors with a row that are no longer alive."""
        return [r["executor_id"] for r in self.rows() if not self._row_alive(r)]

    def forget(self, executor_id: str) -> bool:
        """Delete a dead executor's row; True for the one caller that did."""
        with self.engine.begin() as c:
            res = c.execute(TABLE.delete().where(TABLE.c.executor_id == executor_id))
            return bool(res.rowcount)
