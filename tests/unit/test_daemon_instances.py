"""Instances and scale on fakes (test_daemon_fakes.Harness): N processes
per rollout, scale up and down, a dead instance topped up with backoff."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_fakes import Harness

from ipc import BadRequest
from orchestrator._daemon.instances import missing
from orchestrator._daemon.router import InstanceState


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, instances=3, backoff_s=1.0, backoff_max_s=4.0)
    yield harness
    harness.close()


def new_procs(h: Harness, before: set[str]) -> list[Any]:
    return [p for pid, p in h.rt.procs.items() if pid not in before]


def start_all(h: Harness) -> list[Any]:
    h.life.start(h.rt)
    procs = list(h.rt.procs.values())
    assert len(procs) == 3
    for p in procs[:2]:
        h.hello(p)
        assert h.rt.active() == []  # nothing serves until all three are ready
    h.hello(procs[2])
    assert h.rt.active() == procs and h.rt.rollout is None
    assert h.router.queue("echo").active == [p.inst for p in procs]
    return procs


def test_a_start_brings_every_instance_up_before_any_serves(h: Harness) -> None:
    start_all(h)
    assert h.sup.status(h.rt, h.clock())["instances_wanted"] == 3


def test_an_upgrade_replaces_every_instance(h: Harness) -> None:
    old = start_all(h)
    h.life.upgrade(h.rt, None)
    news = new_procs(h, {p.id for p in old})
    assert len(news) == 3
    for p in news:
        h.hello(p, version="2.0.0")
    assert h.rt.active() == news
    assert all(p.state is InstanceState.DRAINING for p in old)


def test_scale_up_adds_and_down_retires_the_newest(h: Harness) -> None:
    old = start_all(h)
    answers: list[Any] = []
    h.life.scaler.scale(h.rt, 5, lambda body, err: answers.append((body, err)))
    added = new_procs(h, {p.id for p in old})
    assert len(added) == 2 and answers == []
    for p in added:
        h.hello(p)
    assert len(h.rt.active()) == 5 and answers[0][1] is None
    assert len(answers[0][0]["instances"]) == 5
    h.life.scaler.scale(h.rt, 2, lambda body, err: answers.append((body, err)))
    assert h.rt.active() == old[:2]
    assert all(p.state is InstanceState.DRAINING for p in [old[2], *added])
    with pytest.raises(BadRequest):
        h.life.scaler.scale(h.rt, 0, lambda body, err: None)


def test_a_dead_instance_is_topped_up_with_backoff(h: Harness) -> None:
    procs = start_all(h)
    h.exit(procs[0], -9)
    assert missing(h.rt) == 1
    h.life.tick(h.clock())
    first = new_procs(h, {p.id for p in procs})
    assert len(first) == 1
    h.exit(first[0], 1)  # the replacement dies before its hello: try again later
    h.life.tick(h.clock())
    assert len(new_procs(h, {p.id for p in procs} | {first[0].id})) == 0
    h.clock.now += 1.0
    h.life.tick(h.clock())
    again = new_procs(h, {p.id for p in procs} | {first[0].id})
    assert len(again) == 1
    h.hello(again[0])
    assert len(h.rt.active()) == 3


def test_metrics_weights_follow_a_canary(tmp_path: Path) -> None:
    from orchestrator._daemon.canary import CanaryPlan
    from orchestrator._daemon.metrics import _weights

    h = Harness(tmp_path)
    try:
        h.life.start(h.rt)
        h.hello(h.newest())
        assert _weights(h.rt) == (("1.0.0", 100),)
        h.life.upgrade(h.rt, None, canary=CanaryPlan((25, 100), step_s=60))
        h.hello(h.newest(), version="2.0.0")
        assert _weights(h.rt) == (("1.0.0", 75), ("2.0.0", 25))
        st = h.sup.status(h.rt, h.clock())
        assert {(v["version"], v["role"], v["weight"]) for v in st["versions"]} == {
            ("1.0.0", "stable", 75),
            ("2.0.0", "canary", 25),
        }
    finally:
        h.close()
