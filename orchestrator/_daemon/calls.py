"""What the router routes: skill processes as it sees them (``Instance``)
and the calls it holds until they are answered (``PendingCall``). Plain
data; the decisions are :mod:`.router`'s (which re-exports these names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ipc import Call, ToolSpec


class InstanceState(Enum):
    SPAWNED = "spawned"  # process started, no hello yet
    CHECKING = "checking"  # said hello, health gate running
    READY = "ready"  # may receive calls (if in its skill's active set)
    DRAINING = "draining"  # no new calls; finishing in-flight ones
    EXITED = "exited"


@dataclass(eq=False, slots=True)
class Instance:
    """One skill process as the router sees it."""

    id: str
    skill: str
    version: str = ""
    concurrency: int = 1
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    state: InstanceState = InstanceState.SPAWNED
    in_flight: dict[int, PendingCall] = field(default_factory=dict)
    rid: bytes = b""  # the routing id on the wire, encoded once

    def __post_init__(self) -> None:
        self.rid = self.id.encode()

    @property
    def credit(self) -> int:
        return self.concurrency - len(self.in_flight)


@dataclass(eq=False, slots=True)
class PendingCall:
    """A call the daemon accepted and has not answered yet."""

    call_id: int
    client: bytes
    req_id: int
    skill: str
    tool: str
    payload: bytes
    deadline: float
    accepted_at: float
    answered: bool = False
    instance: Instance | None = None
    queued: bool = False  # counted in its queue's ``waiting``
    key: str | None = None  # idempotency key (see .keyed)
    traceparent: str | None = None  # forwarded to the skill
    by_skill: bool = False  # its outcome is the skill's Result, not the daemon's error
    progress: bool = False  # the caller wants CallProgress updates
    sent_at: float = 0.0  # when it went to a skill process (0: not yet)
    session: str | None = None  # pins the call to a version while two are live
    lane: bool | None = None  # during a canary: True on the canary (see weights)

    def message(self, timeout_s: float) -> Call:
        """The Call that runs it on a skill process."""
        return Call(
            self.call_id,
            self.tool,
            timeout_s,
            self.key,
            self.traceparent,
            self.progress,
            self.session,
            payload=self.payload,
        )


__all__ = ["Instance", "InstanceState", "PendingCall"]
