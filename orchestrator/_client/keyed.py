"""What a call may carry besides its arguments: an idempotency key and a
trace context. Shared by :class:`Client` and :class:`AsyncClient`.

An idempotency key makes the daemon run the tool at most once per (skill,
key) and answer every call with that key by the first one's outcome. The
daemon tells "the same call again" from "another call under a reused key"
by a digest of the arguments' bytes; so that the same arguments always make
the same bytes, a keyed call's maps are encoded with their keys sorted.

The trace context is a W3C ``traceparent``: given, or taken from the
current OpenTelemetry span when the caller uses OpenTelemetry. Nothing here
imports it: a program that never imported ``opentelemetry.trace`` has no
span to take, and pays nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any

from ipc import MAX_KEY_CHARS, MAX_SESSION_CHARS, MAX_TRACEPARENT_CHARS, InvalidArguments


def check_key(key: str | None) -> str | None:
    """``key`` if it is one the daemon accepts: a non-empty string of at
    most MAX_KEY_CHARS characters. InvalidArguments otherwise."""
    if key is None:
        return None
    if type(key) is not str:
        raise InvalidArguments(
            f"an idempotency key must be a string, not {type(key).__name__}", key=repr(key)
        )
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidArguments(
            f"an idempotency key must be 1 to {MAX_KEY_CHARS} characters, not {len(key)}",
            key=key[:64],
        )
    return key


def check_session(session: object) -> str | None:
    """A session id (see Client.call): None, or 1..MAX_SESSION_CHARS characters."""
    if session is None or (type(session) is str and 0 < len(session) <= MAX_SESSION_CHARS):
        return session
    raise InvalidArguments(
        f"a session must be a string of 1..{MAX_SESSION_CHARS} characters (got {session!r:.80})"
    )


def check_traceparent(traceparent: str | None) -> str | None:
    """The trace context to send: ``traceparent`` as given (checked), or,
    when None, the current OpenTelemetry span's, if there is one."""
    if traceparent is None:
        return current_traceparent()
    if type(traceparent) is not str or not 0 < len(traceparent) <= MAX_TRACEPARENT_CHARS:
        raise InvalidArguments(
            f"traceparent must be a W3C trace context string of at most "
            f"{MAX_TRACEPARENT_CHARS} characters, not {traceparent!r:.80}"
        )
    return traceparent


def current_traceparent() -> str | None:
    """The W3C traceparent of the current OpenTelemetry span, or None
    (OpenTelemetry not in use, or no valid span)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def canonical(value: Any) -> Any:
    """``value`` with every map's keys in sorted order, recursively, so that
    equal arguments encode to equal bytes whatever order they were built in.
    A map whose keys do not sort (mixed types) keeps its order."""
    if isinstance(value, Mapping):
        items = [(k, canonical(v)) for k, v in value.items()]
        with contextlib.suppress(TypeError):
            items.sort(key=lambda kv: kv[0])
        return dict(items)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


__all__ = ["canonical", "check_key", "check_traceparent", "current_traceparent"]
