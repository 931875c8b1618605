"""zskill.toml: the limits (memory_limit, max_queued) and a file that is not
UTF-8, each a clear ConfigError naming the key or the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ipc import ConfigError
from orchestrator._config import DEFAULT_MAX_QUEUED, load, parse, parse_size

CONFIG = Path("/srv/agent/zskill.toml")


def skill(**settings: Any) -> dict[str, Any]:
    return {"skills": {"echo": {"path": "echo", "command": ["python", "main.py"], **settings}}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512MiB", 512 << 20),
        ("1GiB", 1 << 30),
        ("1gib", 1 << 30),
        ("80 MiB", 80 << 20),
        ("1.5GB", 1_500_000_000),
        ("100MB", 100_000_000),
        ("4096KiB", 4 << 20),
        ("2000000", 2_000_000),
        (3 << 20, 3 << 20),
    ],
)
def test_memory_limit_takes_bytes_or_a_size_with_a_unit(value: Any, expected: int) -> None:
    cfg = parse(skill(memory_limit=value), CONFIG)
    assert cfg.skills["echo"].settings.memory_limit == expected
    assert parse_size(value) == expected


def test_the_limits_default_to_none_and_ten_thousand() -> None:
    s = parse(skill(), CONFIG).skills["echo"].settings
    assert s.memory_limit is None
    assert s.max_queued == DEFAULT_MAX_QUEUED == 10_000


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("512XB", "a size with a unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
        ("lots", "a size with a unit"),
        ("-5MiB", "a size with a unit"),
        (True, "must be a size such as 512MiB"),
        (1.5e9, "a size with a unit"),
        (5, "must be at least 1MiB"),
        ("512KB", "must be at least 1MiB"),
    ],
)
def test_a_bad_memory_limit_names_the_key_and_the_file(value: Any, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(skill(memory_limit=value), CONFIG)
    msg = str(info.value)
    assert msg.startswith(f"{CONFIG}: key 'skills.echo.memory_limit': "), msg
    assert why in msg and "Value error" not in msg
    assert info.value.details["file"] == str(CONFIG)


@pytest.mark.parametrize("value", [0, -1, "100", 2.0, True])
def test_a_bad_max_queued_names_the_key_and_the_file(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"key 'skills\.echo\.max_queued'") as info:
        parse(skill(max_queued=value), CONFIG)
    assert str(CONFIG) in str(info.value)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "zskill.toml"
    path.write_bytes(b'[daemon]\nrun_dir = "caf\xe9"\n')  # latin-1, as an old editor saves it
    with pytest.raises(ConfigError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a text file in UTF-8 (byte 23: invalid continuation byte)")
    assert info.value.details["file"] == str(path)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_the_cli_says_so_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "zskill.toml"
    path.write_bytes(b"[skills.caf\xe9]\n")
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "list", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out
    assert "not a text file in UTF-8" in out.stderr and str(path) in out.stderr
    assert "Traceback" not in out.stderr


def test_a_file_with_broken_skills_still_names_the_daemon(tmp_path: Path) -> None:
    """load_link: what reaching a running daemon needs survives a broken skill table."""
    from orchestrator._config import load_link

    cfg_path = tmp_path / "zskill.toml"
    cfg_path.write_text('[daemon]\nrun_dir = "rd"\n\n[skills.a]\npath = "."\n')
    with pytest.raises(ConfigError, match=r"skills\.a\.command"):
        load(cfg_path)
    cfg, error = load_link(cfg_path)
    assert cfg.run_dir == (tmp_path / "rd").resolve() and cfg.skills == {}
    assert isinstance(error, ConfigError) and "skills.a.command" in str(error)
    cfg_path.write_text('[daemon]\nrun_dir = 3\n\n[skills.a]\npath = "."\n')
    with pytest.raises(ConfigError, match=r"skills\.a\.command"):
        load_link(cfg_path)  # no good [daemon] table: the file's own error
    cfg_path.write_text('[skills.a]\npath = "."\ncommand = ["python", "main.py"]\n')
    cfg, error = load_link(cfg_path)
    assert error is None and list(cfg.skills) == ["a"]
