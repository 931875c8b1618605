"""The agent loop's pure parts: what the model sees of a call, how a step
reads back, the database URL, the import string, and that the core never
imports the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pydantic_ai", reason="the agent extra is not installed")

from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart

from orchestrator._config import parse
from orchestrator.agent.engine import check_url, database_url
from orchestrator.agent.errors import AgentNotFound, DatabaseError
from orchestrator.agent.loader import load_agent
from orchestrator.agent.records import MODEL_STEP, TOOL_STEP, ModelStep, ToolStep
from orchestrator.agent.tasks import _step
from orchestrator.agent.toolset import _to_model

ROOT = Path(__file__).resolve().parents[2]


def tool_step(outcome: str, value: object, error_type: str | None = None) -> ToolStep:
    return ToolStep(
        name="ledger__record",
        skill="ledger",
        tool="record",
        key="t-1:3:call_1",
        outcome=outcome,  # type: ignore[arg-type]
        value=value,
        error_type=error_type,
        skill_version="2.0.0",
        loop_version="abc",
        duration_s=0.004,
    )


def test_a_result_reaches_the_model_as_is() -> None:
    assert _to_model(tool_step("ok", {"n": 1})) == {"n": 1}


def test_a_remote_error_is_a_failure_the_model_adapts_to() -> None:
    with pytest.raises(ToolFailed, match=r"ledger\.record failed: ValueError: boom"):
        _to_model(tool_step("error", "ValueError: boom", "RemoteError"))


@pytest.mark.parametrize("kind", ["InvalidArguments", "ToolNotFound", "SkillNotFound"])
def test_a_call_the_model_got_wrong_is_a_retry(kind: str) -> None:
    with pytest.raises(ModelRetry, match=r"ledger\.record"):
        _to_model(tool_step("error", f"{kind}: nope", kind))


def test_an_unknown_outcome_is_text_that_says_so() -> None:
    text = "outcome unknown: ledger.record may or may not have run (died); check"
    assert _to_model(tool_step("unknown", text, "OutcomeUnknown")) == text


def test_steps_read_back_as_a_trajectory() -> None:
    response = ModelMessagesTypeAdapter.dump_python(
        [ModelResponse(parts=[ToolCallPart("ledger__record", {"step": 3})])], mode="json"
    )[0]
    model = _step(
        {
            "function_id": 2,
            "function_name": MODEL_STEP,
            "output": ModelStep(response, "v1", 0.002),
            "error": None,
            "started_at_epoch_ms": 1_000,
        }
    )
    assert model is not None
    assert (model.kind, model.loop_version, model.outcome) == ("model", "v1", "ok")
    assert model.detail == 'call ledger__record({"step":3})'
    tool = _step(
        {
            "function_id": 3,
            "function_name": TOOL_STEP,
            "output": tool_step("ok", "recorded 3"),
            "error": None,
            "started_at_epoch_ms": 2_000,
        }
    )
    assert tool is not None
    assert tool.to_json()["skill_version"] == "2.0.0"
    assert tool.to_json()["started"] == "1970-01-01T00:00:02.000+00:00"
    answer = _step(
        {
            "function_id": 5,
            "function_name": MODEL_STEP,
            "output": ModelStep(
                ModelMessagesTypeAdapter.dump_python(
                    [ModelResponse(parts=[TextPart("all done")])], mode="json"
                )[0],
                "v2",
                0.001,
            ),
            "error": None,
            "started_at_epoch_ms": None,
        }
    )
    assert answer is not None and answer.detail == "answer all done"
    # The tool list and DBOS's own steps are not part of the trajectory.
    assert _step({"function_id": 1, "function_name": "zskill.list_tools", "output": None}) is None


def test_the_database_is_sqlite_in_the_run_dir_unless_configured(tmp_path: Path) -> None:
    cfg = parse({}, tmp_path / "zskill.toml")
    assert database_url(cfg) == f"sqlite:///{tmp_path / '.zskill' / 'agent.sqlite'}"
    pg = "postgresql://zs@localhost:5432/tasks"
    cfg = parse({"agent": {"database_url": pg}}, tmp_path / "zskill.toml")
    assert database_url(cfg) == pg


@pytest.mark.parametrize("url", ["mysql://x/y", "tasks.db", "http://host/db"])
def test_a_wrong_database_url_is_refused(url: str) -> None:
    with pytest.raises(DatabaseError, match="use sqlite:///PATH or postgresql://"):
        check_url(url)


def test_a_password_never_appears_in_the_error() -> None:
    with pytest.raises(DatabaseError) as info:
        check_url("mysql://user:hunter2@db/x")
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("noagent", "expected MODULE:ATTRIBUTE"),
        ("no_such_module_zz:agent", "no module named 'no_such_module_zz'"),
        ("json:nothing", "module json has no 'nothing'"),
        ("json:dumps", "is a function, not a pydantic-ai Agent"),
    ],
)
def test_an_import_string_that_does_not_resolve(spec: str, message: str, tmp_path: Path) -> None:
    cfg = parse({}, tmp_path / "zskill.toml")
    with pytest.raises(AgentNotFound, match=message):
        load_agent(spec, cfg)


def test_the_core_never_imports_the_agent_extra() -> None:
    code = (
        "import sys, orchestrator, orchestrator.cli.app, skills, ipc\n"
        "import orchestrator._daemon.loop, orchestrator._client.aio, orchestrator.testing\n"
        "heavy = ('pydantic_ai', 'dbos', 'orchestrator.agent')\n"
        "bad = [m for m in sys.modules if m.startswith(heavy)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
