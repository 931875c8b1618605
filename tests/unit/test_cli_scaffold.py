"""``zskill new``: the scaffold is a working skill with the name filled in."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import _config
from orchestrator.cli.app import app
from orchestrator.cli.errors import EXIT_USAGE, UsageError
from orchestrator.cli.scaffold import SKILL_NAME, scaffold


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="zs-new-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def decorated_functions(source: str) -> dict[str, list[str]]:
    """Function name -> its decorators as source text."""
    tree = ast.parse(source)
    return {
        node.name: [ast.unparse(d) for d in node.decorator_list]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_scaffold_writes_a_working_skill(tmp: Path) -> None:
    made = scaffold("weather-2", tmp / "skills", config_dir=tmp)
    assert made.directory == tmp / "skills" / "weather-2"
    assert sorted(p.name for p in made.directory.iterdir()) == ["README.md", "main.py"]
    source = (made.directory / "main.py").read_text()
    compile(source, "main.py", "exec")
    assert 'Skill("weather-2", version="0.1.0")' in source
    assert "__SKILL" not in source
    funcs = decorated_functions(source)
    assert funcs["echo"] == ["skill.tool()"]
    assert funcs["healthy"] == ["skill.health"]
    readme = (made.directory / "README.md").read_text()
    assert readme.startswith("# weather-2\n")
    assert 'path = "skills/weather-2"' in readme
    assert made.toml_table() == (
        '[skills.weather-2]\npath = "skills/weather-2"\ncommand = ["python", "main.py"]\n'
    )


def test_scaffolded_skill_declares_its_tool_with_the_sdk(tmp: Path) -> None:
    made = scaffold("echo2", tmp)
    spec = importlib.util.spec_from_file_location("scaffolded_echo2", made.directory / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: it does not run
    assert module.skill.name == "echo2"
    assert "tools=['echo']" in repr(module.skill)
    assert module.echo("hi", times=2) == "hi hi"
    assert module.healthy() is True


def test_toml_path_is_relative_to_the_config_directory(tmp: Path) -> None:
    made = scaffold("a", tmp / "deep" / "er", config_dir=tmp / "deep")
    assert made.toml_path == "er/a"
    outside = scaffold("b", tmp, config_dir=tmp / "deep")
    assert outside.toml_path == "../b"


def test_scaffold_accepts_an_existing_empty_directory(tmp: Path) -> None:
    (tmp / "empty").mkdir()
    assert scaffold("empty", tmp).directory == tmp / "empty"


def test_scaffold_refuses_a_non_empty_directory(tmp: Path) -> None:
    (tmp / "taken").mkdir()
    (tmp / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not empty"):
        scaffold("taken", tmp)
    assert [p.name for p in (tmp / "taken").iterdir()] == ["keep.txt"]
    (tmp / "afile").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        scaffold("afile", tmp)


@pytest.mark.parametrize("name", ["", "1abc", "-x", "a b", "a/b", "../up", "é", "a" * 65, "x.y"])
def test_scaffold_refuses_invalid_names(tmp: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid skill name"):
        scaffold(name, tmp)
    assert list(tmp.iterdir()) == []


def test_name_rule_is_the_config_rule() -> None:
    assert SKILL_NAME.pattern == _config.SKILL_NAME.pattern


def test_cli_new_prints_the_table_to_add(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp)
    result = CliRunner().invoke(app, ["new", "clock", "--dir", "skills"])
    assert result.exit_code == 0, result.output
    assert "created skills/clock/ (main.py, README.md)" in result.output
    assert '[skills.clock]\npath = "skills/clock"\ncommand = ["python", "main.py"]' in result.output
    assert (tmp / "skills" / "clock" / "main.py").is_file()

    again = CliRunner().invoke(app, ["new", "clock", "--dir", "skills"])
    assert again.exit_code == EXIT_USAGE
    assert "already exists and is not empty" in again.output

    bad = CliRunner().invoke(app, ["new", "9lives"])
    assert bad.exit_code == EXIT_USAGE
    assert "invalid skill name '9lives'" in bad.output
    assert sorted(os.listdir(tmp)) == ["skills"]
