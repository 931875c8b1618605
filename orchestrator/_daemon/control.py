"""The control API: operations a client may ask of the daemon.

Each handler takes the request's arguments and a ``reply`` it must call
exactly once (now, or later when a long operation ends); ``progress`` sends
non-final updates. Arguments are checked here: a bad one is a clear
``BadRequest``, never a crash of the daemon.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ipc import PROTOCOL_VERSION, BadRequest, SkillNotFound, ZskillError

from .._status import SkillStatus
from .canary import CanaryPlan
from .events import EventLog
from .lifecycle import Lifecycle
from .releases import ReleaseStore
from .runtime import SkillRuntime

log = logging.getLogger("zskill.control")

Reply = Callable[[Any, Exception | None], None]
Progress = Callable[[Any], None]


class ControlServer:
    def __init__(
        self,
        lifecycle: Lifecycle,
        events: EventLog,
        releases: ReleaseStore,
        info: dict[str, Any],
        shutdown: Callable[[], None],
        clock: Callable[[], float],
        reload: Callable[[Reply, Progress], None] | None = None,
    ) -> None:
        self.sup = lifecycle.sup
        self.life = lifecycle
        self.events = events
        self.releases = releases
        self.info = info
        self._shutdown = shutdown
        self.clock = clock
        self._reload = reload
        self._ops: dict[str, Callable[[dict[str, Any], Reply, Progress], None]] = {
            "ping": self.op_ping,
            "list": self.op_list,
            "tools": self.op_tools,
            "start": self.op_start,
            "stop": self.op_stop,
            "restart": self.op_restart,
            "upgrade": self.op_upgrade,
            "rollback": self.op_rollback,
            "scale": self.op_scale,
            "rollout": self.op_rollout,
            "releases": self.op_releases,
            "events": self.op_events,
            "shutdown": self.op_shutdown,
            "reload": self.op_reload,
        }

    def handle(self, op: str, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        handler = self._ops.get(op)
        if handler is None:
            reply(
                None, BadRequest(f"unknown operation {op!r}; known: {', '.join(sorted(self._ops))}")
            )
            return
        try:
            handler(args, reply, progress)
        except ZskillError as exc:
            reply(None, exc)
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("control operation %r failed", op)
            reply(None, ZskillError(f"internal error in {op!r}: {type(exc).__name__}: {exc}"))

    # --- argument helpers ------------------------------------------------------

    def _skill(self, args: dict[str, Any]) -> SkillRuntime:
        name = args.get("skill")
        if not isinstance(name, str):
            raise BadRequest("argument 'skill' (a skill name) is required")
        rt = self.sup.skills.get(name)
        if rt is None:
            known = ", ".join(sorted(self.sup.skills)) or "none"
            raise SkillNotFound(f"no skill {name!r} in the config (known: {known})", skill=name)
        return rt

    # --- operations ------------------------------------------------------------

    def op_ping(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        reply({**self.info, "pid": os.getpid(), "protocol": PROTOCOL_VERSION}, None)

    def op_list(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        now = self.clock()
        skills: list[SkillStatus] = [self.sup.status(rt, now) for rt in self.sup.skills.values()]
        reply(skills, None)

    def op_tools(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        rts = [self._skill(args)] if args.get("skill") is not None else self.sup.skills.values()
        out = {}
        for rt in rts:
            active = rt.active()
            if not active:
                continue
            out[rt.name] = [
                {
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                    "idempotent": t.idempotent,
                    "output_schema": t.output_schema,
                }
                for t in active[0].inst.tools.values()
            ]
        reply(out, None)

    def op_start(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        self.life.start(self._skill(args), reply)

    def op_stop(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        self.life.stop(self._skill(args), reply)

    def op_restart(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        self.life.restart(self._skill(args), reply)

    def op_upgrade(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        src = args.get("from")
        if src is not None and not isinstance(src, str):
            raise BadRequest("argument 'from' must be a directory path")
        raw = args.get("canary")
        if raw is not None and not isinstance(raw, dict):
            raise BadRequest("argument 'canary' must be a map (weights, step_s, ...)")
        canary = CanaryPlan.from_args(raw) if raw is not None else None
        allow = args.get("allow_breaking", False)
        if not isinstance(allow, bool):
            raise BadRequest("argument 'allow_breaking' must be true or false")
        rt = self._skill(args)
        self.life.upgrade(rt, src, reply, progress, canary=canary, allow_breaking=allow)

    def op_rollback(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        to = args.get("to")
        if to is not None and (type(to) is not int or to < 1):
            raise BadRequest(f"argument 'to' must be a release number (got {to!r})")
        self.life.rollback(self._skill(args), reply, progress, to=to)

    def op_scale(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        self.life.scaler.scale(self._skill(args), args.get("instances"), reply)

    def op_rollout(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        """The rollout in progress (None: none); with ``action``, steer its canary."""
        rt = self._skill(args)
        action = args.get("action")
        if action is not None:
            if not isinstance(action, str):
                raise BadRequest("argument 'action' must be pause, resume, promote or abort")
            self.life.runner.steer(rt, action, self.clock())
        ar = rt.rollout
        reply(None if ar is None else ar.view(rt.stats.by_version), None)

    def op_releases(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        rt = self._skill(args)
        rels = [r.to_dict() for r in reversed(self.releases.all(rt.name))]
        reply(rels, None)

    def op_events(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        skill = args.get("skill")
        limit = args.get("limit", 100)
        if skill is not None and not isinstance(skill, str):
            raise BadRequest("argument 'skill' must be a skill name")
        if type(limit) is not int:
            raise BadRequest("argument 'limit' must be an integer")
        reply(self.events.query(skill, limit), None)

    def op_reload(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        if self._reload is None:
            raise BadRequest("this daemon cannot reload its config")
        self._reload(reply, progress)

    def op_shutdown(self, args: dict[str, Any], reply: Reply, progress: Progress) -> None:
        reply({}, None)
        self._shutdown()
