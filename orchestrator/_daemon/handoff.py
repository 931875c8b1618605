"""State handoff in an upgrade, the daemon's side: what the rollout
machine's HoldCalls, ExportState, ImportState and ResumeCalls do, and what
a skill's StateReply means to the machine.

    old process                 daemon                          new process
    (serving, exports_state)    (the machine in HANDING_OFF)    (healthy, imports_state)
                                HoldCalls: the old one leaves
                                the active set; calls queue
    ... its last calls end ...  old_idle
          <── ExportState ───── ExportState
    ─── StateReply(state) ───►  exported ─── ImportState(state) ───►
                                imported ◄──── StateReply ──────────
                                the switch: queued calls go to the new one

A failure anywhere (a hook raised, a deadline passed, a process exited)
is ResumeCalls: the old process is active again, takes the held calls,
and keeps the state it never gave away; the new one is killed.

The daemon never decodes the state: it carries the old version's bytes
to the new one untouched, within max_message_bytes.
"""

from __future__ import annotations

import itertools

from ipc import ExportState, ImportState, StateReply

from .drains import drain_window
from .router import InstanceState
from .runtime import ActiveRollout, Proc, SkillRuntime
from .supervisor import Supervisor

_request_ids = itertools.count(1)


class Handoff:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def wait_s(self, rt: SkillRuntime, ar: ActiveRollout, new: Proc, now: float) -> float | None:
        """How long the old process's calls may take to end before its state
        is exported, or None when there is no state to hand over: it takes
        one old process that exports and a new one that imports."""
        if len(ar.old) != 1 or not (ar.old[0].exports_state and new.imports_state):
            return None
        old = ar.old[0]
        running = [now - c.sent_at for c in old.inst.in_flight.values() if c.sent_at]
        return drain_window(rt.config.settings, rt.tail, running).grace_s

    def hold(self, rt: SkillRuntime, now: float) -> None:
        """No call goes to the old process from now on; new ones wait in the
        skill's queue (never failed) until the switch or ResumeCalls."""
        self.sup.router.set_active(rt.name, [], now)

    def resume(self, rt: SkillRuntime, ar: ActiveRollout, now: float) -> None:
        live = [p.inst for p in ar.old if p.state is InstanceState.READY and not p.stop_reason]
        self.sup.router.set_active(rt.name, live, now)

    def idle(self, ar: ActiveRollout) -> bool:
        return all(not p.inst.in_flight for p in ar.old)

    def export(self, ar: ActiveRollout, timeout_s: float) -> None:
        ar.state_request = next(_request_ids)
        self.sup.send(ar.old[0], ExportState(ar.state_request, timeout_s))

    def import_(self, ar: ActiveRollout, timeout_s: float) -> None:
        assert ar.new is not None
        ar.state_request = next(_request_ids)
        msg = ImportState(ar.state_request, timeout_s, ar.old_version, ar.state)
        self.sup.send(ar.new, msg)

    @staticmethod
    def outcome(ar: ActiveRollout, proc: Proc, msg: StateReply) -> tuple[str, bool, str] | None:
        """What a StateReply means: ("exported" | "imported", ok, detail), or
        None when it answers nothing awaited (late, or from another process)."""
        if msg.request_id != ar.state_request or not ar.state_request:
            return None
        ar.state_request = 0
        error = ""
        if msg.error is not None:
            tb = str(msg.error.details.get("traceback", "")).rstrip()
            error = msg.error.message + (f"\n{tb}" if tb else "")
        if ar.old and proc is ar.old[0]:
            if msg.error is None:
                ar.state = msg.payload
            size = f"{len(msg.payload)} bytes from version {ar.old_version or '?'}"
            return "exported", msg.error is None, error or size
        if proc is ar.new:
            old, new = ar.old_version or "?", proc.inst.version
            size = f"{len(ar.state)} bytes handed from version {old} to {new}"
            ar.state = b""  # delivered: not kept beyond its use
            return "imported", msg.error is None, error or size
        return None


__all__ = ["Handoff"]
