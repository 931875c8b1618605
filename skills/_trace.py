"""A span around each call, when the skill's environment has OpenTelemetry.

The caller's trace context comes in the Call header (``traceparent``, W3C);
the call runs inside a span named ``<skill>.<tool>`` (kind SERVER) whose
parent is that context, so the spans the handler makes join the caller's
trace. Attributes: ``zskill.skill``, ``zskill.tool``, ``zskill.version``,
``zskill.instance``. A handler's exception is recorded on the span.

OpenTelemetry is optional (the ``otel`` extra) and loaded only when used:
for the first call that brings a trace context, or once the skill's own
code has imported ``opentelemetry.trace``. A skill without it pays one
dictionary lookup per call. Exporting the spans is the skill's business
(configure a TracerProvider as for any program); without one, the API's
spans cost next to nothing and go nowhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from contextlib import AbstractContextManager
from typing import Any

_NO_SPAN: AbstractContextManager[object] = contextlib.nullcontext()


class CallTracing:
    def __init__(self, skill: str, version: str = "", instance: str = "") -> None:
        self._attributes = {
            "zskill.skill": skill,
            "zskill.version": version,
            "zskill.instance": instance,
        }
        self._skill = skill
        self._api: Any = None  # (trace module, propagator) once loaded
        self._missing = False  # OpenTelemetry is not installed

    def span(self, tool: str, traceparent: str | None) -> AbstractContextManager[object]:
        """The context a call of ``tool`` runs in: its span, or nothing."""
        if traceparent is None and "opentelemetry.trace" not in sys.modules:
            return _NO_SPAN
        api = self._load()
        if api is None:
            return _NO_SPAN
        trace, propagator = api
        parent = propagator.extract({"traceparent": traceparent}) if traceparent else None
        tracer = trace.get_tracer("zskill.skills")
        return tracer.start_as_current_span(  # type: ignore[no-any-return]
            f"{self._skill}.{tool}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={**self._attributes, "zskill.tool": tool},
        )

    def _load(self) -> Any:
        if self._api is not None or self._missing:
            return self._api
        if importlib.util.find_spec("opentelemetry") is None:
            self._missing = True
            return None
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:  # a namespace package without the API in it
            self._missing = True
            return None
        self._api = (trace, TraceContextTextMapPropagator())
        return self._api


__all__ = ["CallTracing"]
