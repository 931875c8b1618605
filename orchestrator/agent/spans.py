"""OpenTelemetry spans for the steps a task runs, when OpenTelemetry is
installed (``zskill[otel]``); nothing otherwise.

Each model request is a span ``agent.model_request`` and each tool call a
span ``agent.tool_call`` (``zskill.skill``, ``zskill.tool``, and once it
answered ``zskill.skill_version`` and ``zskill.outcome``), both carrying
``zskill.task`` and ``zskill.loop_version``. A tool call's span is current
while the call goes out, so the client sends its trace context through the
daemon into the skill, whose own span joins the task's trace. A step
replayed from its checkpoint runs nothing and makes no span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Span", "span"]


class Span:
    """The span of one step (or a stand-in when there is no OpenTelemetry)."""

    def __init__(self, real: Any = None) -> None:
        self._real = real

    def set(self, **attributes: Any) -> None:
        if self._real is not None:
            for key, value in attributes.items():
                if value is not None:
                    self._real.set_attribute(f"zskill.{key}", value)


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    try:
        from opentelemetry import trace
    except ImportError:
        yield Span()
        return
    tracer = trace.get_tracer("zskill.agent")
    with tracer.start_as_current_span(name) as real:
        step = Span(real)
        step.set(**attributes)
        yield step
