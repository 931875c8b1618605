"""Lifecycle and deployment events: published live (PUB, topic = skill name)
and appended to ``events.jsonl`` so the history survives a daemon restart.

Event types (:class:`~orchestrator._status.EventKind`): ``daemon.start``,
``daemon.stop``; per skill ``spawn``, ``ready``, ``exit`` (with how and
whether it was expected), ``unresponsive``, ``backoff``, ``restart``,
``errored``, ``stopping``, ``stopped``; ``rollout`` (one per step of a
start/restart/upgrade/rollback; data: ``op``, ``step``, ``status``,
``old_version``, ``new_version``, ``elapsed_s``, ``detail``), then
``deployed`` or ``rolled_back``; ``tools_changed``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipc import Event

from .._status import EventKind

log = logging.getLogger("zskill.events")

Publish = Callable[[Event], None]


class EventLog:
    def __init__(self, path: Path, publish: Publish, *, keep_in_memory: int = 10_000) -> None:
        self.path = path
        self._publish = publish
        self._recent: deque[Event] = deque(maxlen=keep_in_memory)
        self._seq = 0
        self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def _load(self) -> None:
        lines = 0
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    lines += 1
                    try:
                        d = json.loads(line)
                        ev = Event(
                            int(d["seq"]), float(d["time"]), d["skill"], d["type"], d["data"]
                        )
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash
                    self._recent.append(ev)
                    self._seq = max(self._seq, ev.seq)
        except FileNotFoundError:
            return
        if lines > 2 * (self._recent.maxlen or 0):
            self._compact()

    def _compact(self) -> None:
        """Keep the file as long as the history kept in memory: it is read
        whole at every start, so it must not grow without bound."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for ev in self._recent:
                f.write(json.dumps(event_dict(ev), default=str) + "\n")
        os.replace(tmp, self.path)

    def emit(self, skill: str, kind: EventKind, **data: Any) -> Event:
        """Record and publish an event. Its ``type`` is the kind's plain
        string, and enum values in ``data`` must be passed as ``.value``: the
        wire and ``events.jsonl`` carry plain strings only."""
        self._seq += 1
        ev = Event(self._seq, time.time(), skill, str(kind), data)
        self._recent.append(ev)
        try:
            self._f.write(json.dumps(event_dict(ev), default=str) + "\n")
        except (OSError, ValueError) as exc:
            log.warning("cannot append to %s: %s", self.path, exc)
        self._publish(ev)
        return ev

    def query(self, skill: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        events = [e for e in self._recent if skill is None or e.skill == skill]
        return [event_dict(e) for e in events[-limit:]] if limit > 0 else []

    def close(self) -> None:
        self._f.close()


def event_dict(ev: Event) -> dict[str, Any]:
    return {"seq": ev.seq, "time": ev.time, "skill": ev.skill, "type": ev.type, "data": ev.data}
