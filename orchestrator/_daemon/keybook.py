"""The idempotency keys the daemon holds: one entry per (skill, key),
oldest first, bounded by count, bytes and age.

Pure bookkeeping (no I/O, the wall clock passed in): :mod:`.keyed` decides
what a call with a key gets, :mod:`.keystore` keeps the records on disk,
and this module holds the entries between them. Past any bound the oldest
finished entries go; a running one never does (its callers wait for it).
Bytes are those of each entry's last record, the result included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from ipc import OutcomeUnknown, WireError

from .keystore import Record, RecordKind, latest

if TYPE_CHECKING:
    from .keyed import Waiter
    from .router import PendingCall


class KeyState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    max_keys: int
    max_bytes: int
    max_age_s: float


@dataclass(eq=False, slots=True)
class KeyEntry:
    skill: str
    key: str
    tool: str
    digest: bytes
    at: float  # wall-clock time of first use: what max_age_s counts from
    state: KeyState = KeyState.RUNNING
    attempt: PendingCall | None = None
    dispatched: bool = False  # the attempt reached a skill process at least once
    waiters: list[Waiter] = field(default_factory=list)
    version: str = ""
    error: WireError | None = None
    payload: bytes = b""
    record: bytes = b""  # its last record, encoded: what a compaction keeps

    def encode(self, kind: RecordKind) -> bytes:
        return Record(
            kind,
            self.skill,
            self.key,
            self.tool,
            self.digest,
            self.at,
            self.version,
            self.error,
            self.payload,
        ).encode()


class KeyBook:
    def __init__(self, limits: KeyLimits) -> None:
        self.limits = limits
        self.entries: dict[tuple[str, str], KeyEntry] = {}  # oldest first
        self.bytes = 0  # of the entries' records

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, skill: str, key: str) -> KeyEntry | None:
        return self.entries.get((skill, key))

    def add(self, e: KeyEntry) -> None:
        old = self.entries.pop((e.skill, e.key), None)
        if old is not None:
            self.bytes -= len(old.record)
        self.entries[(e.skill, e.key)] = e
        self.bytes += len(e.record)

    def remove(self, e: KeyEntry) -> None:
        if self.entries.get((e.skill, e.key)) is e:
            del self.entries[(e.skill, e.key)]
            self.bytes -= len(e.record)

    def rerecord(self, e: KeyEntry, kind: RecordKind) -> bytes:
        """``e``'s record anew (its state changed); returns it."""
        old = len(e.record)
        e.record = e.encode(kind)
        if self.entries.get((e.skill, e.key)) is e:
            self.bytes += len(e.record) - old
        return e.record

    def evict(self, now: float) -> list[KeyEntry]:
        """Remove the oldest finished entries while over a bound at wall
        time ``now``; returns them."""
        lim = self.limits
        horizon = now - lim.max_age_s
        n, size = len(self.entries), self.bytes
        victims = []
        for e in self.entries.values():
            if n <= lim.max_keys and size <= lim.max_bytes and e.at >= horizon:
                break
            if e.state is KeyState.RUNNING:
                continue
            victims.append(e)
            n -= 1
            size -= len(e.record)
        for e in victims:
            self.remove(e)
        return victims

    def live(self) -> list[bytes]:
        """Every entry's last record: all a compacted file needs."""
        return [e.record for e in self.entries.values()]

    def restore(self, records: Iterable[Record], now: float) -> None:
        """Entries from a file's records, oldest first, then the bounds. A
        START with no outcome after it was running when the last daemon
        stopped: its outcome is unknown."""
        for rec in sorted(latest(records).values(), key=lambda r: r.at):
            e = KeyEntry(rec.skill, rec.key, rec.tool, rec.digest, rec.at)
            if rec.kind is RecordKind.DONE:
                e.state, e.version, e.error, e.payload = (
                    KeyState.DONE,
                    rec.version,
                    rec.error,
                    rec.payload,
                )
            else:
                e.state, e.error = KeyState.UNKNOWN, rec.error
                if rec.kind is RecordKind.START or rec.error is None:
                    e.error = OutcomeUnknown(
                        f"the call with key {rec.key!r} to {rec.skill}.{rec.tool} was running "
                        "when the daemon stopped without waiting for it; it may or may not "
                        "have taken effect, and it is not run again under this key",
                        key=rec.key,
                        skill=rec.skill,
                        tool=rec.tool,
                    ).to_wire()
            e.record = e.encode(RecordKind.DONE if e.state is KeyState.DONE else RecordKind.UNKNOWN)
            self.add(e)
        self.evict(now)


__all__ = ["KeyBook", "KeyEntry", "KeyLimits", "KeyState"]
