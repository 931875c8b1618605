"""The sampler reads skill processes off the daemon's thread, one sample at
a time, and checks memory_limit on the daemon's thread once the numbers are in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from test_daemon_fakes import DeferredJobs

from orchestrator._daemon.memory import MemoryGuard
from orchestrator._daemon.runtime import SkillRuntime
from orchestrator._daemon.sampler import SAMPLE_S, Sampler
from orchestrator._daemon.stats import SkillStats


class Child:
    alive = True


class Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.child = Child()


class Rt:
    def __init__(self, name: str, pids: list[int]) -> None:
        self.name = name
        self.procs = {f"{name}-{pid}": Proc(pid) for pid in pids}
        self.stats = SkillStats()


class Guard:
    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, rt: Any, now: float) -> None:
        assert rt.stats.rss_bytes > 0, "checked before its numbers were in"
        self.checked.append(rt.name)


def make(tmp_path: Path) -> tuple[Sampler, DeferredJobs, Guard, dict[str, SkillRuntime]]:
    jobs, guard = DeferredJobs(), Guard()
    sampler = Sampler(jobs, cast(MemoryGuard, guard), lambda: 0.0)
    me = Rt("me", [os.getpid()])
    skills = cast(dict[str, SkillRuntime], {"me": me})
    return sampler, jobs, guard, skills


def test_one_sample_at_a_time_and_memory_checked_after_it(tmp_path: Path) -> None:
    sampler, jobs, guard, skills = make(tmp_path)
    sampler.tick(0.0, skills)
    assert len(jobs.pending) == 1 and guard.checked == []  # nothing read on the loop
    sampler.tick(SAMPLE_S * 5, skills)
    assert len(jobs.pending) == 1  # still running: no second one
    jobs.run_next()
    assert guard.checked == ["me"]
    assert skills["me"].stats.rss_bytes > 0 and os.getpid() in skills["me"].stats.rss_by_pid
    sampler.tick(SAMPLE_S - 0.1, skills)
    assert jobs.pending == []  # not due yet
    sampler.tick(SAMPLE_S * 2, skills)
    assert len(jobs.pending) == 1


def test_a_skill_removed_while_sampling_is_not_checked(tmp_path: Path) -> None:
    sampler, jobs, guard, skills = make(tmp_path)
    sampler.tick(0.0, skills)
    del skills["me"]  # a reload removed it meanwhile
    jobs.run_next()
    assert guard.checked == []


def test_a_failed_sample_is_logged_and_the_next_one_runs(tmp_path: Path) -> None:
    sampler, jobs, guard, skills = make(tmp_path)
    sampler.tick(0.0, skills)
    _job, done, _cancelled = jobs.pending.pop(0)
    done(None, OSError("no /proc"))
    assert guard.checked == []
    sampler.tick(SAMPLE_S, skills)
    assert len(jobs.pending) == 1
