"""The one error tree of zskill. Every error zskill raises derives from
:class:`ZskillError`; ``orchestrator`` and ``skills`` re-export it.

    ZskillError
    ├── ConfigError               zskill.toml is missing, unreadable or invalid
    ├── ProtocolError             a frame that is not a valid message
    ├── MessageTooLarge           a message over the size limit
    ├── PayloadError              arguments or a result that msgpack cannot carry
    ├── DaemonUnavailable         no daemon answers on the run dir
    ├── DaemonRunning             another daemon already holds the run dir
    ├── CallError                 a call was answered with a failure
    │   ├── SkillNotFound
    │   ├── ToolNotFound
    │   ├── InvalidArguments      arguments failed the tool's schema
    │   │   └── KeyConflict       an idempotency key reused with other arguments
    │   ├── RemoteError           the handler raised (remote type, traceback)
    │   ├── CallTimeout           no result within the call's deadline
    │   ├── Cancelled             the caller cancelled the call (it may have begun)
    │   ├── OutcomeUnknown        the skill died mid-call; it may or may not have run
    │   ├── SkillUnavailable      the skill is stopped, errored or shutting down
    │   └── SkillOverloaded       the skill's queue is full (max_queued); try later
    └── ControlError              a control operation failed
        ├── BadRequest
        ├── UpgradeInProgress
        └── UpgradeFailed         the new version was rolled back

Errors cross the wire as ``WireError(type, message, details)`` -- never
pickled -- and :func:`error_from_wire` rebuilds the matching class.
"""

from __future__ import annotations

from typing import Any

from ._messages import WireError


class ZskillError(Exception):
    """Root of every zskill error."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_wire(self) -> WireError:
        return WireError(type(self).__name__, self.message, _plain_details(self.details))


class ConfigError(ZskillError):
    pass


class ProtocolError(ZskillError):
    pass


class MessageTooLarge(ZskillError):
    pass


class PayloadError(ZskillError):
    pass


class DaemonUnavailable(ZskillError):
    pass


class DaemonRunning(ZskillError):
    pass


class CallError(ZskillError):
    pass


class SkillNotFound(CallError):
    pass


class ToolNotFound(CallError):
    pass


class InvalidArguments(CallError):
    pass


class KeyConflict(InvalidArguments):
    """An idempotency key already names a call with other arguments (or
    another tool): the daemon refuses rather than answer one call with
    another's outcome. ``key``, ``skill``, ``tool`` say which."""


class RemoteError(CallError):
    """The tool's handler raised. ``remote_type`` and ``traceback`` say what."""

    @property
    def remote_type(self) -> str:
        return str(self.details.get("remote_type", ""))

    @property
    def traceback(self) -> str:
        return str(self.details.get("traceback", ""))


class CallTimeout(CallError):
    pass


class Cancelled(CallError):
    """The call was cancelled by its caller (``Client.cancel``, a cancelled
    task, Ctrl-C, an MCP host): a queued call never ran; a running one was
    told to stop, and may have done part of its work."""


class OutcomeUnknown(CallError):
    pass


class SkillUnavailable(CallError):
    pass


class SkillOverloaded(CallError):
    pass


class ControlError(ZskillError):
    pass


class BadRequest(ControlError):
    pass


class UpgradeInProgress(ControlError):
    pass


class UpgradeFailed(ControlError):
    pass


def _all_subclasses(cls: type[ZskillError]) -> list[type[ZskillError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_NAME: dict[str, type[ZskillError]] = {c.__name__: c for c in _all_subclasses(ZskillError)}


def error_from_wire(err: WireError) -> ZskillError:
    """Rebuild the error a peer sent; an unknown type becomes a plain ZskillError."""
    cls = _BY_NAME.get(err.type, ZskillError)
    details = err.details if isinstance(err.details, dict) else {}
    exc = cls(err.message, **{str(k): v for k, v in details.items()})
    if cls is ZskillError and err.type != "ZskillError":
        exc.details.setdefault("type", err.type)
    return exc


def _plain_details(details: dict[str, Any]) -> dict[str, Any]:
    """Details must be plain data to cross the wire (scalars, and lists and
    maps of them, nested); anything else becomes its repr."""
    return {key: _plain(value) for key, value in details.items()}


def _plain(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    if depth < 8 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if depth < 8 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return repr(value)
