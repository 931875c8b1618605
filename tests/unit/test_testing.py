"""orchestrator.testing as a skill or agent-loop author uses it: tools and
operations answered by handlers, through the real Client and AsyncClient."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

import pytest

from orchestrator import (
    AsyncClient,
    Client,
    DaemonUnavailable,
    InvalidArguments,
    RemoteError,
    SkillNotFound,
    SkillUnavailable,
    ToolNotFound,
    UpgradeFailed,
    ZskillError,
)
from orchestrator.testing import NO_REPLY, FakeDaemon, Later


class QuotaExceeded(SkillUnavailable):
    """An error a skill author defines: the client knows its ipc base class."""


def search(args: dict[str, Any]) -> dict[str, Any]:
    if not args.get("q"):
        raise InvalidArguments("q is required", field="q")
    return {"hits": [args["q"].upper()]}


def test_a_tool_handler_through_the_client() -> None:
    with FakeDaemon(version="3.1.0") as daemon:
        daemon.tool("search", "query", search)

        @daemon.tool("mail", "send")
        def send(args: dict[str, Any]) -> None:
            raise QuotaExceeded("over quota", limit=10)

        with Client(daemon.run_dir, timeout=5.0) as zs:
            assert zs.call("search", "query", {"q": "zmq"}) == {"hits": ["ZMQ"]}
            assert zs.call_detailed("search", "query", {"q": "a"}).version == "3.1.0"
            with pytest.raises(InvalidArguments, match="q is required") as bad:
                zs.call("search", "query", {})
            assert bad.value.details == {"field": "q"}
            with pytest.raises(SkillUnavailable, match="over quota") as quota:
                zs.call("mail", "send", {"to": "me"})
            assert type(quota.value) is SkillUnavailable
            assert quota.value.details == {"limit": 10}
            with pytest.raises(ToolNotFound):
                zs.call("search", "nope")
            with pytest.raises(SkillNotFound):
                zs.call("calendar", "today")
        first = daemon.received[0]
        assert (first.skill, first.tool) == ("search", "query")  # type: ignore[attr-defined]


def test_a_handler_that_raises_something_else_is_a_remote_error() -> None:
    def broken(args: dict[str, Any]) -> None:
        raise KeyError("missing")

    with FakeDaemon() as daemon, Client(daemon.run_dir, timeout=5.0) as zs:
        daemon.tool("s", "broken", broken)
        with pytest.raises(RemoteError) as info:
            zs.call("s", "broken")
        assert info.value.remote_type == "KeyError"
        assert "raise KeyError" in info.value.traceback


def test_the_same_handlers_through_the_async_client() -> None:
    async def main(daemon: FakeDaemon) -> None:
        async with AsyncClient(daemon.run_dir, timeout=5.0) as zs:
            slow = asyncio.ensure_future(zs.call("search", "slow", {"q": "late"}))
            assert await zs.call("search", "query", {"q": "now"}) == {"hits": ["NOW"]}
            assert not slow.done()  # Later holds up nobody
            assert await slow == {"q": "late"}
            with pytest.raises(InvalidArguments):
                await zs.call("search", "query", {})
            with pytest.raises(UpgradeFailed, match="health check"):
                await zs.upgrade("search")

    with FakeDaemon() as daemon:
        daemon.tool("search", "query", search)
        daemon.tool("search", "slow", lambda args: Later(0.3, args))

        @daemon.op("upgrade")
        def upgrade(args: dict[str, Any]) -> None:
            raise UpgradeFailed("health check failed; rolled back", skill=args["skill"])

        asyncio.run(asyncio.wait_for(main(daemon), 30))


def test_operations_progress_and_the_default_echo() -> None:
    def upgrade(args: dict[str, Any]) -> Generator[dict[str, str], None, dict[str, str]]:
        yield {"step": "spawn"}
        yield {"step": "switch"}
        return {"skill": args["skill"], "version": "2"}

    with FakeDaemon() as daemon, Client(daemon.run_dir) as zs:
        daemon.op("upgrade", upgrade)
        seen: list[Any] = []
        assert zs.upgrade("search", on_progress=seen.append) == {"skill": "search", "version": "2"}
        assert seen == [{"step": "spawn"}, {"step": "switch"}]
        assert zs.restart("search") == {"op": "restart", "args": {"skill": "search"}}
        assert zs.list() == [{"op": "list", "args": {}}]


def test_no_reply_trips_the_clients_own_deadline() -> None:
    with FakeDaemon() as daemon, Client(daemon.run_dir) as zs:
        daemon.op("ping", lambda args: NO_REPLY)
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="no answer"):
            zs.ping(timeout=0.2)
        assert time.monotonic() - started < 2.0


def test_closing_the_fake_is_a_daemon_gone() -> None:
    daemon = FakeDaemon().start()
    run_dir = daemon.run_dir
    with Client(run_dir) as zs:
        assert zs.ping()["op"] == "ping"
        daemon.close()
        assert not run_dir.exists()
        with pytest.raises(DaemonUnavailable):  # a client that saw it alive waits its timeout
            zs.ping(timeout=0.2)
        with pytest.raises(DaemonUnavailable, match="no zskill daemon is running"):
            zs.ping()


def test_a_crashed_fake_says_so() -> None:
    with pytest.raises(ZskillError), FakeDaemon() as daemon:
        raise ZskillError("a test failure passes through")
    assert not daemon.run_dir.exists()
