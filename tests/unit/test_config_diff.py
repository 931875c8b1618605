"""zskill reload's plan (orchestrator._config_diff), the env_file format
(orchestrator._envfile), and secrets kept out of config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import ConfigError
from orchestrator._config import Config, SkillSettings, parse
from orchestrator._config_diff import IN_PLACE_KEYS, Action, plan
from orchestrator._envfile import env_digest, parse_env, read_env_file

CONFIG = Path("/srv/agent/zskill.toml")


def config(daemon: dict[str, Any] | None = None, **skills: dict[str, Any]) -> Config:
    tables = {
        name: {"path": name, "command": ["python", "main.py"], **s} for name, s in skills.items()
    }
    return parse({"daemon": daemon or {}, "skills": tables}, CONFIG)


def actions(old: Config, new: Config, **kw: Any) -> dict[str, tuple[Action, tuple[str, ...]]]:
    p = plan(old.skills, new.skills, daemon_old=old.daemon, daemon_new=new.daemon, **kw)
    return {s.name: (s.action, s.keys) for s in p.skills}


def test_added_removed_kept() -> None:
    old = config(echo={}, slow={})
    new = config(echo={}, clock={})
    assert actions(old, new) == {
        "echo": (Action.KEEP, ()),
        "clock": (Action.ADD, ()),
        "slow": (Action.REMOVE, ()),
    }


@pytest.mark.parametrize(
    ("change", "action", "keys"),
    [
        ({"env": {"LEVEL": "debug"}}, Action.RESTART, ("env",)),
        ({"concurrency": 2}, Action.RESTART, ("concurrency",)),
        ({"command": ["python", "other.py"]}, Action.RESTART, ("command",)),
        ({"path": "elsewhere"}, Action.RESTART, ("path",)),
        ({"env_file": ".env"}, Action.RESTART, ("env_file",)),
        ({"max_queued": 5}, Action.UPDATE, ("max_queued",)),
        ({"grace_s": 1.0, "backoff_s": 2.0}, Action.UPDATE, ("backoff_s", "grace_s")),
        ({"memory_limit": "64MiB"}, Action.RESTART, ("memory_limit",)),  # cgroup set at spawn
        ({"watch": True}, Action.UPDATE, ("watch",)),
        ({"autostart": False}, Action.UPDATE, ("autostart",)),
        ({"env": {"LEVEL": "debug"}, "grace_s": 1.0}, Action.RESTART, ("env", "grace_s")),
    ],
)
def test_what_changed_decides_restart_or_update(
    change: dict[str, Any], action: Action, keys: tuple[str, ...]
) -> None:
    old = config(echo={"env": {"LEVEL": "info"}})
    new = config(echo={"env": {"LEVEL": "info"}, **change})
    assert actions(old, new) == {"echo": (action, keys)}


def test_paths_compare_resolved() -> None:
    assert actions(config(echo={"path": "echo"}), config(echo={"path": "./x/../echo"})) == {
        "echo": (Action.KEEP, ())
    }


def test_a_changed_env_file_restarts_only_a_serving_skill_started_with_another() -> None:
    old = config(echo={"env_file": ".env"}, mail={"env_file": "mail.env"}, idle={"env_file": "i"})
    new = old
    got = actions(
        old,
        new,
        env_running={"echo": "digest-1", "mail": "digest-2"},  # idle serves nothing
        env_now={"echo": "digest-1b", "mail": "digest-2", "idle": "other"},
    )
    assert got == {
        "echo": (Action.RESTART, ("env_file",)),
        "mail": (Action.KEEP, ()),
        "idle": (Action.KEEP, ()),
    }


def test_daemon_settings_are_listed_not_planned() -> None:
    p = plan(
        {},
        {},
        daemon_old=config().daemon,
        daemon_new=config({"call_timeout_s": 5.0, "heartbeat_s": 2.0}).daemon,
    )
    assert p.daemon_keys == ("heartbeat_s", "call_timeout_s")
    assert not p.changes_anything


def test_summary_counts_each_action() -> None:
    p = plan(config(a={}, b={}, c={}).skills, config(a={}, b={"concurrency": 1}, d={}).skills)
    assert p.summary() == "1 added, 1 removed, 1 restarted, 1 unchanged"
    assert plan({}, {}).summary() == "no skills"
    # A restart that rolled back is no restart.
    assert p.summary(failed=["b"]) == "1 added, 1 removed, 1 unchanged, 1 failed"


# --- the env_file format ----------------------------------------------------------


def test_env_file_format() -> None:
    text = """
# a comment
API_KEY=abc123
export REGION = eu-west-1   # trailing comment
GREETING="hello \\"world\\"\\nbye"
RAW='no $escapes \\n here'
HASH=a#b
EMPTY=
"""
    assert parse_env(text, Path(".env")) == {
        "API_KEY": "abc123",
        "REGION": "eu-west-1",
        "GREETING": 'hello "world"\nbye',
        "RAW": "no $escapes \\n here",
        "HASH": "a#b",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just-a-secret-value-no-equals", "line 1: expected NAME=value"),
        ("OK=1\n9BAD=secret-value", "line 2: expected NAME=value"),
        ('TOKEN="secret-value', "line 1 (TOKEN): a quoted value is not closed"),
    ],
)
def test_env_file_errors_name_the_line_never_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_env(text, Path("/srv/.env"))
    assert message in info.value.message
    assert "secret-value" not in info.value.message


def test_env_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_env_file(tmp_path / ".env")


def test_env_digest_tells_a_change_and_only_a_change() -> None:
    assert env_digest({"A": "1", "B": "2"}) == env_digest({"B": "2", "A": "1"})
    assert env_digest({"A": "1"}) != env_digest({"A": "2"})
    assert "1" not in env_digest({"A": "1"}).replace("1", "")  # a digest, not the value


def test_env_file_is_resolved_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.env").write_text("API_KEY=k1\n")
    cfg = parse(
        {"skills": {"echo": {"path": "echo", "command": ["x"], "env_file": "secrets.env"}}},
        tmp_path / "zskill.toml",
    )
    sc = cfg.skills["echo"]
    assert sc.env_file == tmp_path / "secrets.env"
    assert sc.file_env() == {"API_KEY": "k1"}
    (tmp_path / "secrets.env").write_text("API_KEY=k2\n")
    assert sc.file_env() == {"API_KEY": "k2"}  # read again every time


def test_a_config_error_in_env_never_shows_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"skills": {"echo": {"path": "e", "command": ["x"], "env": {"K": 12345}}}}, CONFIG)
    assert "skills.echo.env.K" in info.value.message
    assert "12345" not in info.value.message
    with pytest.raises(ConfigError) as info:
        parse({"skills": {"echo": {"path": "e", "command": ["x"], "env": "K=hunter2"}}}, CONFIG)
    assert "hunter2" not in info.value.message


def test_every_setting_is_either_applied_in_place_or_restarts() -> None:
    """A setting added later restarts the skill unless it is listed as
    applied in place: the list names real settings only."""
    assert set(IN_PLACE_KEYS) <= set(SkillSettings.model_fields)
