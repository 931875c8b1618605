"""Typed messages of the zskill wire protocol.

Every message travels as one or two ZeroMQ frames (after the routing id a
ROUTER socket adds): a msgpack *header* array ``[kind, field, field, ...]``
and, for calls and results, an opaque *payload* (the msgpack-encoded
arguments or result) -- inside the header frame when small, else in a frame
of its own (see :mod:`ipc._codec`). The daemon routes on the header alone and
forwards the payload untouched, so a call's arguments are encoded once by the
caller and decoded once by the skill.

Why this module is long: it is the protocol's catalogue, every message kind
a small dataclass, kept in one place so the whole wire can be read at once.

Two channels:

    skill process (DEALER)  <->  daemon "workers" socket (ROUTER)
        Hello, Welcome, Reject, Call, Result, Heartbeat,
        HealthCheck, HealthReply, Drain, Drained, Bye, CallProgress, Cancel,
        ExportState, ImportState, StateReply (state handoff in an upgrade)

    client (DEALER)         <->  daemon "control" socket (ROUTER)
        Request, CallRequest, Reply, CallReply, Progress, CallProgress, Cancel

A call's progress and its cancellation use one kind each on both channels:
``id`` is the call's id on that channel (``Call.call_id`` between the daemon
and a skill, ``CallRequest.req_id`` between a client and the daemon), and
the daemon translates it as it forwards them.

    daemon "events" socket (PUB) -> subscribers: Event (topic = skill name)

Only :mod:`ipc._codec` turns these into raw lists and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

MAX_KEY_CHARS = 512
"""The longest idempotency key a CallRequest may carry (the daemon keeps them)."""
MAX_TRACEPARENT_CHARS = 256
"""Room for a W3C traceparent (55 characters in version 00) and later versions."""
MAX_SESSION_CHARS = 256  # the longest session id a CallRequest may carry


class Kind(IntEnum):
    """The first element of every header."""

    HELLO = 1
    WELCOME = 2
    REJECT = 3
    CALL = 4
    RESULT = 5
    HEARTBEAT = 6
    HEALTH_CHECK = 7
    HEALTH_REPLY = 8
    DRAIN = 9
    DRAINED = 10
    BYE = 11
    CALL_PROGRESS = 12
    CANCEL = 13
    EXPORT_STATE = 16
    IMPORT_STATE = 17
    STATE_REPLY = 18

    REQUEST = 20
    CALL_REQUEST = 21
    REPLY = 22
    CALL_REPLY = 23
    PROGRESS = 24

    EVENT = 30


@dataclass(slots=True)
class Message:
    """Base of every message. ``KIND`` picks the class on decode; ``HAS_PAYLOAD``
    says whether a second frame follows the header."""

    KIND: ClassVar[Kind]
    HAS_PAYLOAD: ClassVar[bool] = False


@dataclass(slots=True)
class ToolSpec:
    """A tool as a skill announces it: JSON Schema of its arguments included,
    and of its result when the handler's return type says (``output_schema``;
    a result that is not an object is wrapped as ``{"result": value}``, and
    such a schema carries :data:`RESULT_WRAPPED`)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    idempotent: bool = False
    output_schema: dict[str, Any] | None = None

    def to_wire(self) -> list[Any]:
        wire = [self.name, self.description, self.input_schema, self.idempotent]
        # Sent only when there is one: a peer of before output schemas reads
        # four items, and most tools still have four to send.
        if self.output_schema is not None:
            wire.append(self.output_schema)
        return wire


COERCE_KEY = "x-zskill-coerce"
"""Set to true at the root of the input schema of a tool whose arguments are
converted leniently ("3" -> 3, the SDK's ``coerce=True``) rather than held
to the schema's types."""

RESULT_WRAPPED = "x-fastmcp-wrap-result"
"""Key set to true in an output schema whose structured result is the value
under ``"result"``: an object schema made for a result that is not one. The
name is the one MCP clients already read to unwrap such results."""


@dataclass(slots=True)
class WireError:
    """An error as it crosses the wire: a type name, a message, and details
    (plain data: for a handler's exception, ``remote_type`` and ``traceback``)."""

    type: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        return [self.type, self.message, self.details]


# --- skill process <-> daemon ------------------------------------------------


@dataclass(slots=True)
class Hello(Message):
    """First message of a skill process: who it is and what it serves."""

    KIND: ClassVar[Kind] = Kind.HELLO
    protocol: int
    skill: str
    version: str
    instance: str
    pid: int
    concurrency: int
    tools: list[ToolSpec]
    has_health: bool
    secret: str = ""
    # It has export_state / import_state hooks (see ExportState); absent: no.
    exports_state: bool = False
    imports_state: bool = False


@dataclass(slots=True)
class Welcome(Message):
    """The daemon accepts a hello; timing of the application heartbeat."""

    KIND: ClassVar[Kind] = Kind.WELCOME
    protocol: int
    heartbeat_s: float
    liveness_s: float


@dataclass(slots=True)
class Reject(Message):
    """The daemon refuses a hello (wrong protocol, name, secret...)."""

    KIND: ClassVar[Kind] = Kind.REJECT
    reason: str


@dataclass(slots=True)
class Call(Message):
    """Run one tool. Payload: the msgpack-encoded arguments map.

    ``key``, ``traceparent``, ``session`` are the caller's, forwarded as they came
    (see CallRequest); None when it sent none."""

    KIND: ClassVar[Kind] = Kind.CALL
    HAS_PAYLOAD: ClassVar[bool] = True
    call_id: int
    tool: str
    timeout_s: float
    key: str | None = None
    traceparent: str | None = None
    progress: bool = False  # the caller wants CallProgress updates
    session: str | None = None
    payload: bytes = b""


@dataclass(slots=True)
class Result(Message):
    """Outcome of one call. Payload: the msgpack-encoded result when ``error``
    is None; empty otherwise."""

    KIND: ClassVar[Kind] = Kind.RESULT
    HAS_PAYLOAD: ClassVar[bool] = True
    call_id: int
    error: WireError | None
    payload: bytes = b""


@dataclass(slots=True)
class Heartbeat(Message):
    """Sent both ways every ``heartbeat_s``: proves the sender's Python runs."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT
    in_flight: int = 0


@dataclass(slots=True)
class HealthCheck(Message):
    """Run the skill's health hook."""

    KIND: ClassVar[Kind] = Kind.HEALTH_CHECK
    check_id: int
    timeout_s: float


@dataclass(slots=True)
class HealthReply(Message):
    KIND: ClassVar[Kind] = Kind.HEALTH_REPLY
    check_id: int
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Drain(Message):
    """Take no new call, finish the running ones, answer Drained, exit."""

    KIND: ClassVar[Kind] = Kind.DRAIN


@dataclass(slots=True)
class Drained(Message):
    KIND: ClassVar[Kind] = Kind.DRAINED


@dataclass(slots=True)
class Bye(Message):
    """The skill process is about to exit on its own."""

    KIND: ClassVar[Kind] = Kind.BYE
    reason: str = ""


@dataclass(slots=True)
class ExportState(Message):
    """Run the export_state hook (no call runs now); answered by StateReply."""

    KIND: ClassVar[Kind] = Kind.EXPORT_STATE
    request_id: int
    timeout_s: float


@dataclass(slots=True)
class ImportState(Message):
    """Run import_state on the old version's state (the payload, as sent)."""

    KIND: ClassVar[Kind] = Kind.IMPORT_STATE
    HAS_PAYLOAD: ClassVar[bool] = True
    request_id: int
    timeout_s: float
    from_version: str
    payload: bytes = b""


@dataclass(slots=True)
class StateReply(Message):
    """A state hook's outcome; payload: the exported state (msgpack), if any."""

    KIND: ClassVar[Kind] = Kind.STATE_REPLY
    HAS_PAYLOAD: ClassVar[bool] = True
    request_id: int
    error: WireError | None
    payload: bytes = b""


# --- client <-> daemon ---------------------------------------------------------


@dataclass(slots=True)
class Request(Message):
    """A control operation (``list``, ``stop``, ``upgrade``...). ``args`` is the
    operation's keyword arguments; the control server validates them."""

    KIND: ClassVar[Kind] = Kind.REQUEST
    req_id: int
    op: str
    args: dict[str, Any]


@dataclass(slots=True)
class CallRequest(Message):
    """Call ``skill.tool``. Payload: the msgpack-encoded arguments map.

    ``key``: an idempotency key; the daemon runs the tool at most once per
    (skill, key) and answers every call with that key by the first one's
    outcome. ``traceparent``: W3C trace context, forwarded to the skill so
    its spans join the caller's trace. ``session``: while a canary runs, the
    session's calls keep to one version."""

    KIND: ClassVar[Kind] = Kind.CALL_REQUEST
    HAS_PAYLOAD: ClassVar[bool] = True
    req_id: int
    skill: str
    tool: str
    timeout_s: float
    key: str | None = None
    traceparent: str | None = None
    progress: bool = False  # send CallProgress updates of this call
    session: str | None = None
    payload: bytes = b""


@dataclass(slots=True)
class Reply(Message):
    """Final answer to a Request: ``body`` on success, ``error`` otherwise."""

    KIND: ClassVar[Kind] = Kind.REPLY
    req_id: int
    body: Any
    error: WireError | None = None


@dataclass(slots=True)
class CallReply(Message):
    """Final answer to a CallRequest. Payload: the result (when no error),
    exactly as the skill encoded it; ``version`` names who served it."""

    KIND: ClassVar[Kind] = Kind.CALL_REPLY
    HAS_PAYLOAD: ClassVar[bool] = True
    req_id: int
    version: str
    error: WireError | None
    payload: bytes = b""


@dataclass(slots=True)
class Progress(Message):
    """A non-final update for a Request still running (upgrade steps, log lines)."""

    KIND: ClassVar[Kind] = Kind.PROGRESS
    req_id: int
    body: Any


@dataclass(slots=True)
class CallProgress(Message):
    """How far a running call got: skill -> daemon (``id`` = call_id), and
    daemon -> client (``id`` = req_id) for a call that asked for progress.
    ``total`` None: the amount of work is not known."""

    KIND: ClassVar[Kind] = Kind.CALL_PROGRESS
    id: int
    done: float
    total: float | None = None
    message: str | None = None


@dataclass(slots=True)
class Cancel(Message):
    """Stop a call: client -> daemon (``id`` = the req_id of a call on the same
    connection), daemon -> skill (``id`` = call_id). Fire and forget: the
    call itself is answered (the caller gets Cancelled)."""

    KIND: ClassVar[Kind] = Kind.CANCEL
    id: int
    reason: str = ""


@dataclass(slots=True)
class Event(Message):
    """A lifecycle or deployment event, published with the skill as topic."""

    KIND: ClassVar[Kind] = Kind.EVENT
    seq: int
    time: float
    skill: str
    type: str
    data: dict[str, Any]


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    Welcome,
    Reject,
    Call,
    Result,
    Heartbeat,
    HealthCheck,
    HealthReply,
    Drain,
    Drained,
    Bye,
    ExportState,
    ImportState,
    StateReply,
    Request,
    CallRequest,
    Reply,
    CallReply,
    Progress,
    CallProgress,
    Cancel,
    Event,
)
