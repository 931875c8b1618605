"""Idempotency keys: a tool runs at most once per (skill, key).

A call with a key is looked up before the router sees it:

    no entry          -> START written, then routed as any call (the attempt)
    entry, other args -> KeyConflict (a digest of tool and arguments differs)
    running           -> waits for the attempt's outcome (a waiter, own deadline)
    done              -> the recorded result or error, at once, not run again
    unknown           -> OutcomeUnknown, at once, never run again

How the attempt ends decides what the key says from then on:

    the skill's Result (in time or late)      -> done: every caller gets it
    its process died mid-call                 -> unknown
    timed out while running                   -> still running: the Result
                                                 or the process's end settles it
    refused before any skill ran it           -> forgotten: the key is free
      (overloaded, stopped, no such tool...)     again, waiters get the refusal

Entries are bounded by count, bytes and age (``idempotency_max_*`` in
``[daemon]``); the oldest finished ones go first, running ones never. They
survive a restart through :mod:`.keystore`; a call that was running when
the daemon died is unknown after it.

Everything here runs on the daemon's thread.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ipc import (
    MAX_KEY_CHARS,
    MAX_TRACEPARENT_CHARS,
    CallError,
    CallReply,
    CallRequest,
    CallTimeout,
    InvalidArguments,
    KeyConflict,
    Message,
    OutcomeUnknown,
    SkillOverloaded,
    SkillUnavailable,
    WireError,
    ZskillError,
)

from .._config import Config
from .._rundir import RunDir
from .jobs import Jobs
from .keybook import KeyBook, KeyEntry, KeyLimits, KeyState
from .keystore import KeyStore, Record, RecordKind
from .router import PendingCall, Router
from .sockets import Sockets

log = logging.getLogger("zskill.daemon")

SendCtl = Callable[[bytes, Message], None]

NOT_RUN_BY_SKILL = frozenset({"ToolNotFound", "SkillUnavailable"})
"""Errors a skill answers before running the handler (no such tool, draining)."""


@dataclass(eq=False, slots=True)
class Waiter:
    """A call with a key whose first attempt still runs."""

    client: bytes
    req_id: int
    deadline: float
    accepted_at: float
    answered: bool = False


def digest(tool: str, payload: bytes) -> bytes:
    return hashlib.blake2b(tool.encode() + b"\0" + payload, digest_size=16).digest()


class KeyedCalls:
    def __init__(
        self,
        router: Router,
        store: KeyStore | None,
        send_ctl: SendCtl,
        limits: KeyLimits,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.store = store
        self._send_ctl = send_ctl
        self._wall = wall
        self.book = KeyBook(limits)
        self._deadlines: list[tuple[float, int, Waiter, KeyEntry]] = []
        self._seq = itertools.count()
        router.keys = self

    # --- startup -----------------------------------------------------------------

    @classmethod
    def open(
        cls, layout: RunDir, jobs: Jobs, router: Router, sockets: Sockets, config: Config
    ) -> KeyedCalls:
        """The daemon's keys, with what the last daemon of the run dir kept."""
        store = KeyStore(layout.idempotency_log, jobs)
        d = config.daemon
        limits = KeyLimits(d.idempotency_max_keys, d.idempotency_max_bytes, d.idempotency_max_age_s)
        keyed = cls(router, store, sockets.send_ctl, limits)
        n = keyed.restore(store.load())
        if n:
            log.info("%d idempotency keys kept from the last run", n)
        return keyed

    def restore(self, records: list[Record]) -> int:
        """Entries from the store's records; returns how many."""
        self.book.restore(records, self._wall())
        return len(self.book)

    # --- calls -----------------------------------------------------------------

    def call(self, ident: bytes, msg: CallRequest, timeout_s: float, now: float) -> None:
        """A CallRequest with a key: answered from its entry, made to wait for
        the attempt, or routed as the first attempt."""
        assert msg.key is not None
        key, skill = msg.key, msg.skill
        problem = _bad_header(msg)
        if problem is not None:
            self._reply(ident, msg.req_id, "", problem.to_wire())
            return
        self.book.evict(self._wall())  # a key past max_age_s is gone, if nothing else took it
        d = digest(msg.tool, msg.payload)
        e = self.book.get(skill, key)
        if e is not None and e.digest != d:
            other = "other arguments" if e.tool == msg.tool else f"the tool {e.tool!r}"
            err = KeyConflict(
                f"idempotency key {key!r} of skill {skill!r} was first used with {other}; "
                "a retry must repeat its call exactly (a new call needs a new key)",
                key=key,
                skill=skill,
                tool=msg.tool,
                first_tool=e.tool,
            )
            self._reply(ident, msg.req_id, "", err.to_wire())
            return
        if e is None:
            self._first(ident, msg, d, timeout_s, now)
        elif e.state is KeyState.RUNNING:
            bound = self.router.queue(skill).max_queued
            if bound is not None and len(e.waiters) >= bound:  # a flood of duplicates
                err2 = SkillOverloaded(
                    f"{len(e.waiters)} calls with key {key!r} already wait for the first "
                    f"(max_queued = {bound}); try again later",
                    skill=skill,
                    key=key,
                    max_queued=bound,
                )
                self._reply(ident, msg.req_id, "", err2.to_wire())
                return
            w = Waiter(ident, msg.req_id, now + timeout_s, now)
            e.waiters.append(w)
            heapq.heappush(self._deadlines, (w.deadline, next(self._seq), w, e))
        else:
            self._reply(ident, msg.req_id, e.version, e.error, e.payload)

    def _first(
        self, ident: bytes, msg: CallRequest, d: bytes, timeout_s: float, now: float
    ) -> None:
        assert msg.key is not None
        e = KeyEntry(msg.skill, msg.key, msg.tool, d, self._wall())
        e.record = e.encode(RecordKind.START)
        try:
            self._write(e.record)
        except OSError as exc:
            # Run without a record, and a daemon killed mid-call would run it twice.
            err = CallError(
                f"the call with key {msg.key!r} was not run: its key could not be "
                f"recorded in {self.store.path if self.store else '?'} ({exc.strerror})",
                key=msg.key,
                skill=msg.skill,
            )
            self._reply(ident, msg.req_id, "", err.to_wire())
            return
        self.book.add(e)
        # A refusal (overloaded, stopped...) is answered inside accept, and
        # settles the entry before accept returns (see _entry_of).
        call = self.router.accept(
            ident,
            msg.req_id,
            msg.skill,
            msg.tool,
            msg.payload,
            timeout_s,
            now,
            key=msg.key,
            traceparent=msg.traceparent,
            progress=msg.progress,
            session=msg.session,
        )
        if self.book.get(e.skill, e.key) is e and e.state is KeyState.RUNNING:
            e.attempt = call

    def sent(self, call: PendingCall) -> None:
        """The attempt went to a skill process (it may run from now on)."""
        e = self._entry_of(call)
        if e is not None:
            e.dispatched = True

    # --- outcomes (the router's answers, then late ones) ------------------------

    def settled(
        self, call: PendingCall, error: WireError | None, payload: bytes, version: str
    ) -> None:
        """What the router answered for a keyed call, or learned after it
        answered (Router.on_late)."""
        e = self._entry_of(call)
        if e is None:
            return
        if call.by_skill:
            if error is not None and error.type in NOT_RUN_BY_SKILL:
                self._forget(e, error)
            else:
                self._finish(e, KeyState.DONE, version, error, payload)
        elif error is not None and error.type == "OutcomeUnknown":
            self._finish(e, KeyState.UNKNOWN, version, self._unknown(e, error), b"")
        elif call.instance is not None:
            pass  # timed out while running: its Result or its process's end settles it
        elif e.dispatched:
            # It ran, was lost, queued again (an idempotent tool), and then
            # never ran again: whether the first run took effect is unknown.
            reason = OutcomeUnknown(error.message if error else "", key=e.key).to_wire()
            self._finish(e, KeyState.UNKNOWN, version, self._unknown(e, reason), b"")
        else:
            self._forget(e, error)

    def _finish(
        self,
        e: KeyEntry,
        state: KeyState,
        version: str,
        error: WireError | None,
        payload: bytes,
    ) -> None:
        e.state, e.attempt = state, None
        e.version, e.error, e.payload = version, error, payload
        record = self.book.rerecord(
            e, RecordKind.DONE if state is KeyState.DONE else RecordKind.UNKNOWN
        )
        try:
            self._write(record)
        except OSError as exc:  # the START on disk makes it unknown after a restart: safe
            log.warning("cannot record the outcome of key %r: %s", e.key, exc)
        for w in e.waiters:
            if not w.answered:
                w.answered = True
                self._reply(w.client, w.req_id, version, error, payload)
        e.waiters.clear()
        self.book.evict(self._wall())
        store = self.store
        if store is not None and store.wants_compaction(self.book.bytes):
            store.compact(self.book.live())

    def _forget(self, e: KeyEntry, error: WireError | None) -> None:
        """The attempt never ran: the key is free again; who waited for it
        gets its refusal."""
        self.book.remove(e)
        try:
            self._write(e.encode(RecordKind.FORGET))
        except OSError as exc:
            log.warning("cannot record that key %r is free: %s", e.key, exc)
        for w in e.waiters:
            if not w.answered:
                w.answered = True
                self._reply(w.client, w.req_id, "", error)
        e.waiters.clear()

    def _unknown(self, e: KeyEntry, error: WireError) -> WireError:
        """The error every later call with the key gets."""
        return OutcomeUnknown(
            f"the call with key {e.key!r} to {e.skill}.{e.tool} has an unknown outcome "
            f"({error.message}); it is not run again under this key",
            key=e.key,
            skill=e.skill,
            tool=e.tool,
        ).to_wire()

    # --- deadlines of waiters ----------------------------------------------------

    def expire(self, now: float) -> None:
        """Waiters past their deadline get CallTimeout; a due fsync starts."""
        if self.store is not None:
            self.store.flush(now)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, w, e = heapq.heappop(heap)
            if w.answered:
                continue
            w.answered = True
            call = e.attempt
            err = CallTimeout(
                f"the call with key {e.key!r} to {e.skill}.{e.tool} got no result within "
                f"{w.deadline - w.accepted_at:.3g} s: it waited for the first call with "
                f"this key{f' (call {call.call_id})' if call else ''}, which still runs",
                key=e.key,
                skill=e.skill,
                tool=e.tool,
            )
            self._reply(w.client, w.req_id, "", err.to_wire())

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][2].answered:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def close(self, reason: str) -> None:
        """At shutdown: every waiter still waiting is answered."""
        for e in self.book.entries.values():
            for w in e.waiters:
                if not w.answered:
                    w.answered = True
                    err = SkillUnavailable(reason, skill=e.skill, key=e.key)
                    self._reply(w.client, w.req_id, "", err.to_wire())
        if self.store is not None:
            self.store.close()

    # --- the entries -------------------------------------------------------------

    def _entry_of(self, call: PendingCall) -> KeyEntry | None:
        assert call.key is not None
        e = self.book.get(call.skill, call.key)
        if e is None or e.state is not KeyState.RUNNING:
            return None
        # No attempt yet: the call is being accepted right now (see _first).
        return e if e.attempt is call or e.attempt is None else None

    def _write(self, record: bytes) -> None:
        if self.store is not None:
            self.store.append(record)

    def _reply(
        self,
        ident: bytes,
        req_id: int,
        version: str,
        error: WireError | None,
        payload: bytes = b"",
    ) -> None:
        self._send_ctl(ident, CallReply(req_id, version, error, payload if error is None else b""))


def _bad_header(msg: CallRequest) -> ZskillError | None:
    key, tp = msg.key or "", msg.traceparent
    if not 0 < len(key) <= MAX_KEY_CHARS:
        return InvalidArguments(
            f"an idempotency key must be 1 to {MAX_KEY_CHARS} characters, not {len(key)}",
            skill=msg.skill,
        )
    if tp is not None and len(tp) > MAX_TRACEPARENT_CHARS:
        return InvalidArguments(
            f"a traceparent must be at most {MAX_TRACEPARENT_CHARS} characters", skill=msg.skill
        )
    return None


__all__ = ["KeyedCalls", "Waiter", "digest"]
