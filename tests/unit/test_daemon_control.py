"""The ControlServer on fakes: argument checks, errors answered once, and
operations handed to the Lifecycle (test_daemon_fakes.Harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_fakes import Harness

from ipc import BadRequest, SkillNotFound, ZskillError
from orchestrator._daemon.control import ControlServer


class Control:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.shutdowns = 0
        self.server = ControlServer(
            h.life, h.events, h.releases, {"run_dir": "/tmp/x"}, self._shutdown, h.clock
        )

    def _shutdown(self) -> None:
        self.shutdowns += 1

    def ask(self, op: str, **args: Any) -> list[tuple[Any, Exception | None]]:
        replies: list[tuple[Any, Exception | None]] = []
        self.server.handle(op, args, lambda body, err: replies.append((body, err)), lambda b: None)
        return replies


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Control]:
    h = Harness(tmp_path)
    yield Control(h)
    h.close()


def test_unknown_operation_names_the_known_ones(c: Control) -> None:
    ((body, err),) = c.ask("explode")
    assert body is None and isinstance(err, BadRequest)
    assert "unknown operation 'explode'" in str(err) and "upgrade" in str(err)


@pytest.mark.parametrize("op", ["start", "stop", "restart", "upgrade", "rollback", "releases"])
def test_missing_skill_argument(c: Control, op: str) -> None:
    ((_, err),) = c.ask(op)
    assert isinstance(err, BadRequest) and "argument 'skill'" in str(err)


def test_unknown_skill(c: Control) -> None:
    ((_, err),) = c.ask("start", skill="mail")
    assert isinstance(err, SkillNotFound) and "known: echo" in str(err)
    assert c.h.procs.spawned == []


def test_an_exception_in_a_handler_is_answered_once_as_zskill_error(
    c: Control, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(c.h.life, "start", broken)
    replies = c.ask("start", skill="echo")
    assert len(replies) == 1
    body, err = replies[0]
    assert body is None and type(err) is ZskillError
    assert str(err).startswith("internal error in 'start': KeyError")


def test_bad_argument_types(c: Control) -> None:
    ((_, err),) = c.ask("events", limit="ten")
    assert isinstance(err, BadRequest) and "'limit'" in str(err)
    ((_, err2),) = c.ask("upgrade", skill="echo", **{"from": 5})
    assert isinstance(err2, BadRequest) and "'from'" in str(err2)


def test_start_list_and_stop_go_through_the_lifecycle(c: Control) -> None:
    h = c.h
    started = c.ask("start", skill="echo")
    assert started == []  # answered when the rollout ends
    proc = h.newest()
    h.hello(proc)
    assert started[0][1] is None and started[0][0]["state"] == "running"
    ((skills, err),) = c.ask("list")
    assert err is None and [s["name"] for s in skills] == ["echo"]
    ((tools, _),) = c.ask("tools")
    assert [t["name"] for t in tools["echo"]] == ["say"]
    ((releases, _),) = c.ask("releases", skill="echo")
    assert [r["version"] for r in releases] == ["1.0.0"]
    stopped = c.ask("stop", skill="echo")
    assert stopped == []
    h.exit(proc, 0)
    assert stopped[0][0]["state"] == "stopped"


def test_ping_and_shutdown(c: Control) -> None:
    ((info, _),) = c.ask("ping")
    assert info["run_dir"] == "/tmp/x" and info["pid"] > 0 and "protocol" in info
    assert c.ask("shutdown") == [({}, None)]
    assert c.shutdowns == 1
