"""Cancellation: a caller that gives up stops the work it asked for.

A call is given up when its caller cancels it (``Cancel`` from the client
that made it: ``Client.cancel``, a cancelled task, Ctrl-C, an MCP host) or
when its deadline passes (``Router.expire``). Either way the caller is
answered at once -- ``Cancelled`` or ``CallTimeout`` -- and then::

    still queued ──────────► dropped: it never runs (Router.fail; dispatch skips it)
    running on a process ──► Cancel(call_id) to the skill: an async handler's task
                             is cancelled, a sync handler sees ctx.cancelled
                             │  the slot stays taken until the handler returns
                             ├─ returns: its Result frees the slot (and is dropped)
                             ├─ IGNORED_AFTER_S later, still running: reported
                             │    (event cancel_ignored; ``list`` counts it in cancelling)
                             └─ cancel_grace_s later, still running: the process is
                                  hung; a zero-downtime restart replaces it (the new
                                  process takes the calls; the old one, once only
                                  such calls are left on it, gets SIGTERM at once,
                                  SIGKILL kill_timeout_s later), so hung calls can
                                  never starve the skill for good

A Cancel can overtake its own call when the client sends them from two
threads; one for a call the daemon does not know yet is remembered for
``EARLY_KEEP_S``, and the call is answered Cancelled when it comes.

Everything runs on the daemon's thread; ``tick`` looks at the calls being
cancelled only (a handful), never at every call in flight.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable

from ipc import Cancel, Cancelled, Message

from .._status import EventKind
from .events import EventLog
from .lifecycle import Lifecycle
from .router import InstanceState, PendingCall, Router

log = logging.getLogger("zskill.cancels")

IGNORED_AFTER_S = 1.0
"""A handler still running this long after its cancel is reported."""
EARLY_KEEP_S = 30.0
"""How long a Cancel for a call not (yet) known is kept for it."""
EARLY_MAX = 10_000

SendWorker = Callable[[bytes, Message], bool]


def cancelled(call: PendingCall, reason: str, where: str) -> Cancelled:
    return Cancelled(
        f"call {call.call_id} to {call.skill}.{call.tool} was cancelled {where}: {reason}",
        call_id=call.call_id,
        skill=call.skill,
        tool=call.tool,
        reason=reason,
    )


class Cancels:
    def __init__(
        self, router: Router, life: Lifecycle, events: EventLog, send_worker: SendWorker
    ) -> None:
        self.router = router
        self.life = life
        self.events = events
        self._send_worker = send_worker
        self._watch: dict[int, tuple[PendingCall, float]] = {}  # told to stop, and when
        self._reported: set[int] = set()
        self._early: dict[tuple[bytes, int], str] = {}
        self._early_order: deque[tuple[float, tuple[bytes, int]]] = deque()
        router.on_abandon = self.abandon

    # --- from clients ------------------------------------------------------------

    def request(self, client: bytes, req_id: int, reason: str, now: float) -> None:
        """``client`` cancels its call ``req_id``."""
        reason = reason or "cancelled by the caller"
        call = self._find(client, req_id)
        if call is None:
            self._remember(client, req_id, reason, now)
        else:
            self.cancel(call, reason, now)

    def overtaken(self, client: bytes, req_id: int) -> str | None:
        """The reason of a Cancel that came before call ``req_id`` itself."""
        if not self._early:
            return None
        return self._early.pop((client, req_id), None)

    def cancel(self, call: PendingCall, reason: str, now: float) -> None:
        if call.answered:
            return
        inst = call.instance
        if inst is None:
            self.router.fail(call, cancelled(call, reason, "before it ran"))
            return
        self.router.fail(call, cancelled(call, reason, f"while it ran on {inst.id}"))
        self.abandon(call, reason, now)

    def abandon(self, call: PendingCall, reason: str, now: float) -> None:
        """``call`` runs, and its caller was answered: tell the skill to stop it."""
        inst = call.instance
        if inst is None or call.call_id in self._watch:
            return
        self._watch[call.call_id] = (call, now)
        self._send_worker(inst.rid, Cancel(call.call_id, reason))

    # --- time --------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Report handlers that ignore their cancel; replace a process whose
        handler ignored it past the skill's ``cancel_grace_s``."""
        while self._early_order and self._early_order[0][0] <= now - EARLY_KEEP_S:
            self._early.pop(self._early_order.popleft()[1], None)
        for call_id, (call, cancelled_at) in list(self._watch.items()):
            inst = call.instance
            if inst is None:  # it returned (or its process is gone)
                del self._watch[call_id]
                self._reported.discard(call_id)
                continue
            waited_s = now - cancelled_at
            if waited_s >= IGNORED_AFTER_S and call_id not in self._reported:
                self._reported.add(call_id)
                log.warning(
                    "%s: call %d (%s) still runs %.1f s after it was cancelled",
                    inst.id,
                    call_id,
                    call.tool,
                    waited_s,
                )
                self.events.emit(
                    call.skill,
                    EventKind.CANCEL_IGNORED,
                    instance=inst.id,
                    call_id=call_id,
                    tool=call.tool,
                    waited_s=round(waited_s, 3),
                )
            rt = self.life.sup.skills.get(call.skill)
            if rt is None or waited_s < rt.config.settings.cancel_grace_s:
                continue
            if inst.state is InstanceState.DRAINING:
                self._cut_drain(inst.id, now)
                continue
            if inst.state is not InstanceState.READY or rt.rollout is not None:
                continue  # already on its way out, or a rollout will replace it
            if rt.desired != "running" or rt.errored:
                continue
            grace = rt.config.settings.cancel_grace_s
            why = (
                f"{inst.id}: call {call_id} ({call.tool}) still runs {waited_s:.1f} s after "
                f"it was cancelled (cancel_grace_s = {grace:g})"
            )
            log.warning("%s: %s; replacing it (zero-downtime restart)", rt.name, why)
            self.events.emit(
                rt.name,
                EventKind.RESTART,
                reason="cancel_ignored",
                why=f"{why}: the process is hung, replaced by a zero-downtime restart",
                instance=inst.id,
                call_id=call_id,
                restarts=rt.restarts + 1,
            )
            self.life.restart(rt)

    def _cut_drain(self, instance: str, now: float) -> None:
        """A draining process whose every running call is one its caller gave
        up on, and that ignored its cancel past cancel_grace_s, is hung: its
        drain waits for no one, so SIGTERM comes now rather than after grace_s."""
        proc = self.life.sup.procs.get(instance)
        if proc is None or proc.drain_deadline is None or proc.drain_deadline <= now:
            return
        if all(c.answered and c.call_id in self._watch for c in proc.inst.in_flight.values()):
            log.info(
                "%s: its running calls were all cancelled and ignored; ending its drain", instance
            )
            proc.drain_deadline = now

    def _find(self, client: bytes, req_id: int) -> PendingCall | None:
        """The unanswered call ``req_id`` of ``client``, queued or running. A
        linear scan: only a cancel looks, and it is rare; the hot path keeps
        no index for it."""
        queued = (c for q in self.router.queues.values() for c in q.pending)
        running = (c for p in self.life.sup.procs.values() for c in p.inst.in_flight.values())
        for call in itertools.chain(queued, running):
            if call.req_id == req_id and call.client == client and not call.answered:
                return call
        return None

    def _remember(self, client: bytes, req_id: int, reason: str, now: float) -> None:
        key = (client, req_id)
        if key in self._early:
            return
        if len(self._early_order) >= EARLY_MAX:
            self._early.pop(self._early_order.popleft()[1], None)
        self._early[key] = reason
        self._early_order.append((now, key))


__all__ = ["Cancels", "cancelled"]
