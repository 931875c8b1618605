"""The Reloader on fakes (test_daemon_fakes): what a reload does to the
daemon's skills when a restart rolls back, a skill is removed, or a rollout
is in the way. The plan itself is tested in test_config_diff."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_fakes import Harness

from ipc import ConfigError, UpgradeInProgress
from orchestrator._config import Config
from orchestrator._daemon.reload import Reloader
from orchestrator._rundir import RunDir


class Setup:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.h = Harness(base)
        self.applied: list[Config] = []
        self.r = Reloader(
            self.h.config, self.h.life, self.h.events, RunDir(base / "run"), self.applied.append
        )
        self.answers: list[tuple[Any, Exception | None]] = []

    def write(self, **skills: dict[str, Any]) -> None:
        lines = ['[daemon]\nrun_dir = "run"\nheartbeat_s = 1.0\nliveness_s = 5.0\n']
        for name, extra in skills.items():
            lines.append(
                f'[skills.{name}]\npath = "echo"\ncommand = ["python", "main.py"]\n'
                f"concurrency = 4\n" + "".join(f"{k} = {v}\n" for k, v in extra.items())
            )
        (self.base / "zskill.toml").write_text("\n".join(lines))

    def reload(self) -> None:
        self.r.reload(lambda body, err: self.answers.append((body, err)))

    def serving(self) -> Any:
        rt = self.h.sup.skills["echo"]
        self.h.life.start(rt)
        proc = max(rt.procs.values(), key=lambda p: p.pid)
        self.h.hello(proc)
        assert rt.active() == [proc]
        return rt, proc


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path)
    yield setup
    setup.h.close()


def test_a_restart_that_rolls_back_puts_the_old_settings_back(s: Setup) -> None:
    rt, old = s.serving()
    s.write(echo={"env": '{ A = "2" }'})
    s.reload()
    new = max(rt.procs.values(), key=lambda p: p.pid)
    assert new is not old and s.h.procs.spawned[-1][2]["A"] == "2"
    s.h.exit(new, 1)  # the new settings do not run
    [(body, err)] = s.answers
    assert err is None and body["ok"] is False
    [outcome] = body["skills"]
    assert outcome["detail"] == "not restarted" and outcome["keys"] == ["env"]
    assert "the old settings keep serving" in outcome["why"]
    assert rt.config.settings.env == {} and rt.active() == [old]
    assert s.r.config.skills["echo"].settings.env == {}  # what the next reload compares


def test_a_removed_skill_drains_and_is_forgotten_once_its_process_is_gone(s: Setup) -> None:
    rt, proc = s.serving()
    s.write()  # no skills
    s.reload()
    assert rt.removing and proc.stop_reason and s.answers == []
    s.r.tick()
    assert "echo" in s.h.sup.skills  # still draining
    s.h.exit(proc, 0)
    s.r.tick()
    assert "echo" not in s.h.sup.skills
    [(body, _err)] = s.answers
    assert body["skills"] == [
        {
            "skill": "echo",
            "action": "remove",
            "keys": [],
            "ok": True,
            "detail": "drained and stopped; removed",
        }
    ]
    assert s.applied[-1].skills == {}
    assert "removed" in s.h.types()


def test_nothing_changes_when_a_rollout_is_in_the_way_or_the_file_is_bad(s: Setup) -> None:
    rt = s.h.sup.skills["echo"]
    s.h.life.start(rt)  # starting: no hello yet
    before = rt.config
    s.write(echo={"env": '{ A = "2" }'})
    with pytest.raises(UpgradeInProgress, match="nothing was changed"):
        s.reload()
    s.write(echo={"env_file": '".env"'})  # no such file
    with pytest.raises(ConfigError, match="no such file"):
        s.reload()
    assert rt.config is before and s.applied == [] and len(rt.procs) == 1
    refused = [e["data"] for e in s.h.events.query(None, 100) if e["type"] == "reload"]
    assert [r["ok"] for r in refused] == [False, False]


def test_a_change_the_daemon_applies_itself_keeps_the_process(s: Setup) -> None:
    rt, proc = s.serving()
    s.write(echo={"max_queued": 3, "grace_s": 1.5})
    s.reload()
    [(body, _err)] = s.answers
    assert body["skills"][0]["action"] == "update"
    assert rt.procs == {proc.id: proc} and not proc.stop_reason
    assert rt.config.settings.grace_s == 1.5 and s.h.router.queue("echo").max_queued == 3
