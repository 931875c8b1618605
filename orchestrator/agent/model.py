"""Each model request of a task as a checkpointed DBOS step.

pydantic-ai's own ``DBOSModel`` does the same; this one also records which
loop version made the request and how long it took (``records.ModelStep``),
which the trajectory shows. Outside a task (no workflow) it is the wrapped
model unchanged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dbos import DBOS
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from . import gate
from .records import MODEL_STEP, ModelStep
from .spans import span

__all__ = ["DurableModel", "in_task"]

_MESSAGES = ModelMessagesTypeAdapter


def in_task() -> bool:
    """Whether this is a task's own code (a workflow, not inside one of its steps)."""
    return DBOS.workflow_id is not None and DBOS.step_id is None


class DurableModel(WrapperModel):
    def __init__(self, wrapped: Model, loop_version: str) -> None:
        super().__init__(wrapped)
        self.loop_version = loop_version

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if not in_task():
            return await super().request(messages, model_settings, model_request_parameters)

        async def step() -> ModelStep:
            started = time.perf_counter()
            with span("agent.model_request", task=DBOS.workflow_id, loop_version=self.loop_version):
                response = await self.wrapped.request(
                    messages, model_settings, model_request_parameters
                )
            # Recorded as plain data: reading a trajectory needs no pydantic-ai.
            plain = _MESSAGES.dump_python([response], mode="json")[0]
            return ModelStep(plain, self.loop_version, time.perf_counter() - started)

        async with gate.step():
            recorded = await DBOS.run_step_async({"name": MODEL_STEP}, step)
        (response,) = _MESSAGES.validate_python([recorded.response])
        assert isinstance(response, ModelResponse)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        # A stream cannot be replayed from a checkpoint: in a task, stream
        # inside no step at all would redo the request on every resume.
        if in_task():
            raise NotImplementedError(
                "a durable task runs its model requests whole (agent.run), not streamed"
            )
        async with super().request_stream(
            messages, model_settings, model_request_parameters, run_context
        ) as stream:
            yield stream
