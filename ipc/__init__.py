"""zskill's wire protocol: message kinds, the msgpack codec, socket options,
and the errors that cross the wire. Shared by the daemon, its clients and the
skill SDK."""

from typing import TYPE_CHECKING, Any

from ._errors import (
    BadRequest,
    CallError,
    CallTimeout,
    ConfigError,
    ControlError,
    DaemonRunning,
    DaemonUnavailable,
    InvalidArguments,
    MessageTooLarge,
    OutcomeUnknown,
    PayloadError,
    ProtocolError,
    RemoteError,
    SkillNotFound,
    SkillOverloaded,
    SkillUnavailable,
    ToolNotFound,
    UpgradeFailed,
    UpgradeInProgress,
    ZskillError,
    error_from_wire,
)
from ._messages import (
    COERCE_KEY,
    RESULT_WRAPPED,
    Bye,
    Call,
    CallReply,
    CallRequest,
    Drain,
    Drained,
    Event,
    HealthCheck,
    HealthReply,
    Heartbeat,
    Hello,
    Kind,
    Message,
    Progress,
    Reject,
    Reply,
    Request,
    Result,
    ToolSpec,
    Welcome,
    WireError,
)

if TYPE_CHECKING:
    from ._codec import (
        INLINE_PAYLOAD_MAX,
        Dropped,
        call_bytes,
        decode,
        decode_header,
        decode_payload,
        encode,
        encode_payload,
    )
    from ._sockets import (
        ENV_CONCURRENCY,
        ENV_ENDPOINT,
        ENV_INSTANCE,
        ENV_MAX_MESSAGE_BYTES,
        ENV_SECRET,
        ENV_SECRET_FD,
        ENV_SKILL,
        HEADER_ROOM_BYTES,
        MAX_FRAMES,
        MAX_MESSAGE_BYTES,
        PROTOCOL_VERSION,
        Endpoints,
        configure,
        more_waiting,
        recv_frames,
        send_frames,
    )

# The codec (msgpack) and the socket helpers (pyzmq) load on first use, so
# that importing the error classes -- as ``import orchestrator`` and every
# ``zskill --help`` do -- costs neither.
_LAZY = {
    "INLINE_PAYLOAD_MAX": "_codec",
    "Dropped": "_codec",
    "call_bytes": "_codec",
    "decode": "_codec",
    "decode_header": "_codec",
    "decode_payload": "_codec",
    "encode": "_codec",
    "encode_payload": "_codec",
    "ENV_CONCURRENCY": "_sockets",
    "ENV_ENDPOINT": "_sockets",
    "ENV_INSTANCE": "_sockets",
    "ENV_MAX_MESSAGE_BYTES": "_sockets",
    "ENV_SECRET": "_sockets",
    "ENV_SECRET_FD": "_sockets",
    "ENV_SKILL": "_sockets",
    "HEADER_ROOM_BYTES": "_sockets",
    "MAX_FRAMES": "_sockets",
    "MAX_MESSAGE_BYTES": "_sockets",
    "PROTOCOL_VERSION": "_sockets",
    "Endpoints": "_sockets",
    "configure": "_sockets",
    "more_waiting": "_sockets",
    "recv_frames": "_sockets",
    "send_frames": "_sockets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BadRequest",
    "Bye",
    "Call",
    "CallError",
    "CallReply",
    "CallRequest",
    "CallTimeout",
    "ConfigError",
    "ControlError",
    "DaemonRunning",
    "DaemonUnavailable",
    "Drain",
    "Drained",
    "Dropped",
    "ENV_CONCURRENCY",
    "ENV_ENDPOINT",
    "ENV_INSTANCE",
    "ENV_MAX_MESSAGE_BYTES",
    "ENV_SECRET",
    "ENV_SECRET_FD",
    "ENV_SKILL",
    "Endpoints",
    "Event",
    "HEADER_ROOM_BYTES",
    "HealthCheck",
    "HealthReply",
    "Heartbeat",
    "Hello",
    "INLINE_PAYLOAD_MAX",
    "InvalidArguments",
    "Kind",
    "MAX_FRAMES",
    "MAX_MESSAGE_BYTES",
    "Message",
    "MessageTooLarge",
    "OutcomeUnknown",
    "PROTOCOL_VERSION",
    "PayloadError",
    "Progress",
    "ProtocolError",
    "Reject",
    "RemoteError",
    "Reply",
    "Request",
    "Result",
    "SkillNotFound",
    "SkillOverloaded",
    "SkillUnavailable",
    "ToolNotFound",
    "COERCE_KEY",
    "RESULT_WRAPPED",
    "ToolSpec",
    "UpgradeFailed",
    "UpgradeInProgress",
    "Welcome",
    "WireError",
    "ZskillError",
    "call_bytes",
    "configure",
    "decode",
    "decode_header",
    "decode_payload",
    "encode",
    "encode_payload",
    "error_from_wire",
    "more_waiting",
    "recv_frames",
    "send_frames",
]
