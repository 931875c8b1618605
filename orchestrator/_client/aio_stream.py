"""The event stream of :class:`~.aio.AsyncClient`: as :mod:`.stream`, read
by one task of an asyncio event loop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Generator
from types import TracebackType
from typing import Any

import zmq
import zmq.asyncio

import ipc
from ipc import Event, ZskillError

from . import common

__all__ = ["AsyncEventStream"]


class AsyncEventStream:
    """Events of one skill (or all) as they are published; for one task.

    As with :class:`~.stream.EventStream`, events published before the subscription
    reached the daemon are missed; the durable history is ``events()``.
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, skill: str | None) -> None:
        self._skill = skill
        self._sock = ctx.socket(zmq.SUB)
        # ipc.configure is typed for sync sockets; the options are the same.
        ipc.configure(self._sock)  # type: ignore[arg-type]
        self._sock.setsockopt(zmq.SUBSCRIBE, common.topic(skill))
        self._sock.connect(endpoint)
        self._closed = False

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds (None: wait on)."""
        if self._closed:
            raise ZskillError("event stream is closed")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if deadline is not None:
                wait_ms = max(0, math.ceil((deadline - loop.time()) * 1000))
                if not await self._sock.poll(wait_ms):
                    return None
            event = common.event_from_frames(await self._sock.recv_multipart())
            if event is not None and common.wants(event, self._skill):
                return event

    def __await__(self) -> Generator[Any, None, AsyncEventStream]:
        """``await client.subscribe()``: the stream itself (the spelling of
        when ``subscribe`` was a coroutine)."""
        return self._itself().__await__()

    async def _itself(self) -> AsyncEventStream:
        return self

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        event = await self.next(None)
        assert event is not None
        return event

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(linger=0)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
