"""The ``zskill`` commands through typer's CliRunner: exit codes, failing fast
without a daemon, usage and config errors, and each command's output against
a fake client (a real daemon comes in the integration tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import orchestrator.cli.daemon as cli_daemon
from ipc import Event, RemoteError, SkillNotFound, UpgradeFailed
from orchestrator._client.common import CallResult
from orchestrator._config import load
from orchestrator.cli import logs as _cli_logs
from orchestrator.cli.app import app
from orchestrator.cli.errors import EXIT_FAILED, EXIT_NO_DAEMON, EXIT_OK, EXIT_USAGE

CONFIG = """
[daemon]
run_dir = "run"

[skills.echo]
path = "."
command = ["python", "main.py"]
"""


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def config() -> Iterator[Path]:
    """A zskill.toml whose short run dir holds no sockets: no daemon runs."""
    d = Path(tempfile.mkdtemp(prefix="zs-cli-"))
    try:
        path = d / "zskill.toml"
        path.write_text(CONFIG)
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


# --- no daemon ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["list", "--json"],
        ["call", "echo", "say", "--json", '{"text": "hi"}'],
        ["start", "echo"],
        ["stop", "echo"],
        ["restart", "echo"],
        ["upgrade", "echo"],
        ["rollback", "echo"],
        ["releases", "echo"],
        ["events"],
        ["events", "-f"],
        ["dashboard"],
        ["dashboard", "--once"],
        ["tools"],
    ],
)
def test_commands_fail_fast_without_a_daemon(config: Path, argv: list[str]) -> None:
    started = time.monotonic()
    result = run(*argv, "--config", str(config))
    assert time.monotonic() - started < 5.0
    assert result.exit_code == EXIT_NO_DAEMON, result.output
    assert "no zskill daemon is running" in result.stderr
    assert str(config.parent / "run") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_down_without_a_daemon_is_a_no_op_that_says_so(config: Path) -> None:
    result = run("down", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert (
        result.stdout
        == f"no zskill daemon is running on {config.parent / 'run'}; nothing to stop\n"
    )


def test_config_comes_before_or_after_the_command_or_from_the_environment(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no zskill.toml here
    other = tmp_path / "other.toml"
    for argv, env in [
        (["--config", str(config), "list"], None),
        (["-c", str(config), "list"], None),
        (["list", "--config", str(config)], None),
        (["list"], str(config)),
        (["--config", str(config), "list"], str(other)),  # the option beats the variable
        (["--config", str(other), "list", "--config", str(config)], None),  # the nearer wins
    ]:
        if env is None:
            monkeypatch.delenv("ZSKILL_CONFIG", raising=False)
        else:
            monkeypatch.setenv("ZSKILL_CONFIG", env)
        result = run(*argv)
        assert result.exit_code == EXIT_NO_DAEMON, (argv, env, result.output)
        assert str(config.parent / "run") in result.stderr
    monkeypatch.delenv("ZSKILL_CONFIG", raising=False)
    missing = run("list")
    assert missing.exit_code == EXIT_USAGE
    assert "set ZSKILL_CONFIG" in missing.stderr


def test_shell_completion_is_offered() -> None:
    result = run("--show-completion", "bash")
    assert result.exit_code == EXIT_OK, result.output
    assert "_ZSKILL_COMPLETE=complete_bash" in result.stdout
    assert "--install-completion" in run("--help").stdout


def test_config_errors_exit_2_naming_the_key(config: Path) -> None:
    config.write_text(CONFIG + "concurency = 3\n")
    result = run("list", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "unknown key 'skills.echo.concurency'" in result.stderr
    assert str(config) in result.stderr

    config.write_text(CONFIG.replace('path = "."', "path = 3"))
    result = run("up", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "'skills.echo.path'" in result.stderr

    config.write_text(CONFIG.replace('run_dir = "run"', 'run_dir = "run"\nlog_max_bytes = 100'))
    result = run("list", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "'daemon.log_max_bytes'" in result.stderr

    result = run("logs", "echo", "--config", str(config.parent / "missing.toml"))
    assert result.exit_code == EXIT_USAGE
    assert "no such config file" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{bad", "--json: not valid JSON"),
        ("[1, 2]", "--json: expected a JSON object, got list"),
        ('"text"', "--json: expected a JSON object, got str"),
    ],
)
def test_call_with_invalid_json_exits_2(config: Path, args: str, message: str) -> None:
    result = run("call", "echo", "say", "--json", args, "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert message in result.stderr


def test_upgrade_from_must_be_a_directory(config: Path) -> None:
    result = run("upgrade", "echo", "--from", str(config.parent / "nope"), "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.stderr
    result = run("upgrade", "echo", "--from", str(config), "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "is not a directory" in result.stderr


EVERY_COMMAND = [
    ["up"],
    ["up", "--detach"],
    ["down"],
    ["list"],
    ["call", "echo", "say"],
    ["start", "echo"],
    ["stop", "echo"],
    ["restart", "echo"],
    ["upgrade", "echo"],
    ["rollback", "echo"],
    ["releases", "echo"],
    ["logs", "echo"],
    ["events"],
    ["events", "-f"],
    ["dashboard", "--once"],
    ["keys"],
    ["mcp"],
]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_a_run_dir_that_is_a_file_exits_2(config: Path, argv: list[str]) -> None:
    """Hardening 13: `logs` and `keys` failed with a traceback (NotADirectoryError)."""
    (config.parent / "run").write_text("not a directory")
    result = run(*argv, "--config", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    run_dir = config.parent / "run"
    assert f"cannot use {run_dir} as the run dir (run_dir in {config})" in result.stderr
    assert "it is not a directory" in result.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="giving a run dir to another user (chown) needs root")
@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_another_users_run_dir_exits_2(config: Path, argv: list[str]) -> None:
    """Hardening 13: `keys` wrote its keys into another user's run dir and
    `logs` read (or, as that user's mode allows, failed to read) theirs."""
    run_dir = config.parent / "run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "echo.log").write_text('{"t": 1, "stream": "out", "line": "theirs"}\n')
    for path in (run_dir, run_dir / "logs", run_dir / "logs" / "echo.log"):
        os.chown(path, 65534, 65534)
    result = run(*argv, "--config", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert f"cannot use {run_dir} as the run dir" in result.stderr
    assert "belongs to uid 65534" in result.stderr
    assert not (run_dir / "keys").exists()
    assert "theirs" not in result.stdout


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "argv",
    [["call", "echo", "say", "--timeout"], ["up", "--detach", "--timeout"], ["down", "--timeout"]],
    ids=" ".join,
)
def test_a_timeout_not_positive_and_finite_is_a_usage_error(
    config: Path, argv: list[str], value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hardening 9 and 13: --timeout 0 gave up at once ("no daemon") while the
    daemon ran the call with its default; --timeout nan was a traceback."""

    def no_connecting(cfg: Any, **kwargs: Any) -> Any:
        raise AssertionError("connected with a bad --timeout")

    monkeypatch.setattr(cli_daemon, "connect", no_connecting)
    monkeypatch.setattr(cli_daemon, "ping_quietly", no_connecting)
    result = run(*argv, value, "--config", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "Invalid value for '--timeout'" in result.stderr
    assert "is not a positive, finite number of seconds" in result.stderr


def test_mcp_protocol_is_auto_or_legacy(config: Path) -> None:
    result = run("mcp", "--protocol", "2026", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "--protocol must be auto or legacy" in result.stderr


def test_mcp_without_a_daemon_says_how_to_start_one(config: Path) -> None:
    result = run("mcp", "--config", str(config))
    assert result.exit_code == EXIT_NO_DAEMON
    assert "no zskill daemon is running" in result.stderr and "--start" in result.stderr
    assert result.stdout == ""


def test_usage_errors_exit_2() -> None:
    assert run("call", "echo").exit_code == EXIT_USAGE
    assert run("nosuchcommand").exit_code == EXIT_USAGE
    assert run("logs", "echo", "-n", "-1").exit_code == EXIT_USAGE


def test_no_arguments_shows_help() -> None:
    result = run()
    assert "Usage" in result.output
    for command in ("up", "down", "list", "call", "upgrade", "rollback", "logs", "events", "new",
                    "dashboard", "mcp"):  # fmt: skip
        assert f" {command} " in result.output


def test_version() -> None:
    result = run("version")
    assert result.exit_code == EXIT_OK
    assert result.output.startswith("zskill ")


# What the commands import in their bodies, never ``zskill --help``.
HEAVY = (
    "rich",
    "pydantic",
    "psutil",
    "orchestrator._client.sync",
    "orchestrator._config",
    "orchestrator._curve",
    "orchestrator._daemon.loop",
    "orchestrator._mcp.bridge",
    "orchestrator._status",
    "orchestrator.cli.daemon",
    "orchestrator.cli.format",
    "orchestrator.cli.render",
    "orchestrator.cli.logs",
    "orchestrator.cli.scaffold",
    "orchestrator.cli.dashboard.app",
)


def test_the_cli_imports_light() -> None:
    """rich, the client, the config loader (pydantic), the renderers and the
    daemon are imported by the commands that use them, not by ``zskill --help``."""
    code = (
        "import sys, orchestrator.cli.app as cli\n"
        "try:\n"
        "    cli.app(['--help'], prog_name='zskill')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print([m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Usage: zskill" in out.stdout
    assert out.stderr.strip() == "[]"


def test_python_m_orchestrator_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: zskill ")
    assert "upgrade" in out.stdout


# --- logs (no daemon needed) ------------------------------------------------------------


def write_log(config: Path, skill: str, records: list[dict[str, Any]]) -> Path:
    path = config.parent / "run" / "logs" / f"{skill}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def log_records(now: float) -> list[dict[str, Any]]:
    return [
        {"t": now - 3600, "stream": "out", "version": "1.0.0", "pid": 10, "line": "old"},
        {"t": now - 5, "stream": "err", "version": "1.0.0", "pid": 10, "line": "warn"},
        {"t": now - 1, "stream": "out", "version": "1.1.0", "pid": 11, "line": "new"},
    ]


def test_logs_reads_the_run_dir(config: Path) -> None:
    now = time.time()
    write_log(config, "echo", log_records(now))
    result = run("logs", "echo", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" | ")[1] for line in lines] == ["old", "warn", "new"]
    assert lines[2].split()[2:5] == ["1.1.0", "11", "out"]

    tail = run("logs", "echo", "-n", "1", "--config", str(config)).stdout.splitlines()
    assert [line.split(" | ")[1] for line in tail] == ["new"]
    err = run("logs", "echo", "--err", "--config", str(config)).stdout.splitlines()
    assert [line.split(" | ")[1] for line in err] == ["warn"]
    since = run("logs", "echo", "--since", "1m", "--config", str(config)).stdout.splitlines()
    assert [line.split(" | ")[1] for line in since] == ["warn", "new"]
    # --json is one document; --jsonl the stored lines, one per line.
    doc = json.loads(run("logs", "echo", "--json", "-n", "2", "--config", str(config)).stdout)
    assert [rec["line"] for rec in doc] == ["warn", "new"]
    raw = run("logs", "echo", "--jsonl", "-n", "2", "--config", str(config)).stdout.splitlines()
    assert [json.loads(line)["line"] for line in raw] == ["warn", "new"]
    # Clock times and dates, not only durations.
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 30))
    since = run("logs", "echo", "--since", clock, "--config", str(config)).stdout.splitlines()
    assert [line.split(" | ")[1] for line in since] == ["warn", "new"]
    # Each line carries its date.
    assert lines[0].startswith(time.strftime("%Y-%m-%d ", time.localtime(now - 3600)))


def test_logs_errors(config: Path) -> None:
    result = run("logs", "echo", "--since", "ten", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "--since: not a duration, clock time or date" in result.stderr
    result = run("logs", "echo", "-f", "--json", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "use --jsonl with -f" in result.stderr
    result = run("logs", "ghost", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    assert "no skill 'ghost'" in result.stderr
    result = run("logs", "../../etc/passwd", "--config", str(config))
    assert result.exit_code == EXIT_USAGE
    # A configured skill that has not printed anything yet: empty, fine.
    result = run("logs", "echo", "--config", str(config))
    assert (result.exit_code, result.stdout) == (EXIT_OK, "")


def test_logs_follow_ends_cleanly_on_ctrl_c(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(config, "echo", log_records(time.time())[:1])

    def follow(follower: _cli_logs.LogFollower, keep: Any, **_: Any) -> Iterator[Any]:
        yield _cli_logs.parse_record(json.dumps({"t": 0, "stream": "out", "line": "live"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli_logs, "follow", follow)
    result = run("logs", "echo", "-f", "--config", str(config))
    assert result.exit_code == EXIT_OK
    assert [line.split(" | ")[1] for line in result.stdout.splitlines()] == ["old", "live"]


# --- commands against a fake client ----------------------------------------------------


class FakeStream:
    def __init__(self, events: list[Event | None]) -> None:
        self.events = events
        self.closed = False

    def next(self, timeout: float | None = None) -> Event | None:
        if not self.events:
            raise KeyboardInterrupt  # the user's Ctrl-C ends the follow
        return self.events.pop(0)

    def close(self) -> None:
        self.closed = True


STATUS = {
    "name": "echo",
    "state": "running",
    "version": "1.0.0",
    "pid": 4242,
    "uptime_s": 61,
    "restarts": 1,
    "in_flight": 0,
    "queued": 0,
}


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.result: Any = "hi hi"
        self.error: Exception | None = None
        self.statuses = [dict(STATUS)]
        self.progress: list[dict[str, Any]] = []
        self.report: dict[str, Any] = {}
        self.stream = FakeStream([])
        self.history: list[dict[str, Any]] = []
        self.on_shutdown: Callable[[], None] = lambda: None
        self.closed = False

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def _do(self, op: str, arg: Any = None) -> None:
        self.calls.append((op, arg))
        if self.error is not None:
            raise self.error

    def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        return {"pid": 999_999_999, "run_dir": "/r", "config": "/c", "started_at": 0, "protocol": 1}

    def call_detailed(
        self,
        skill: str,
        tool: str,
        args: Any = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        session: str | None = None,
    ) -> CallResult:
        self._do("call", (skill, tool, args, timeout) if key is None else (skill, tool, args, key))
        return CallResult(self.result, "1.1.0", 0.0123)

    def start(self, skill: str) -> dict[str, Any]:
        self._do("start", skill)
        return dict(STATUS)

    def stop(self, skill: str) -> dict[str, Any]:
        self._do("stop", skill)
        return dict(STATUS, state="stopped", pid=None)

    def restart(self, skill: str) -> dict[str, Any]:
        self._do("restart", skill)
        return dict(STATUS, pid=4243)

    def upgrade(
        self, skill: str, from_dir: Any = None, *, on_progress: Any = None
    ) -> dict[str, Any]:
        self.calls.append(("upgrade", (skill, from_dir)))
        for p in self.progress:
            on_progress(p)
        if self.error is not None:
            raise self.error
        return self.report

    def rollback(self, skill: str, *, on_progress: Any = None) -> dict[str, Any]:
        return self.upgrade(skill, on_progress=on_progress)

    def releases(self, skill: str) -> list[dict[str, Any]]:
        self._do("releases", skill)
        return [{"id": "r1", "version": "1.0.0", "source": "skills/echo", "current": True}]

    def events(self, skill: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        self._do("events", (skill, limit))
        return self.history

    def subscribe(self, skill: str | None = None) -> FakeStream:
        self.calls.append(("subscribe", skill))
        return self.stream

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))
        self.on_shutdown()

    def list(self) -> list[dict[str, Any]]:
        self.calls.append(("list", None))
        return self.statuses

    def tools(self, skill: str | None = None) -> dict[str, list[dict[str, Any]]]:
        self._do("tools", skill)
        return {"echo": TOOLS} if skill in (None, "echo") else {}


TOOLS = [
    {
        "name": "say",
        "description": "Repeat text.",
        "idempotent": False,
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "the text to repeat."},
                "times": {"type": "integer", "default": 1, "description": "how many times."},
                "mode": {"enum": ["a", "b"]},
                "tags": {
                    "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
                },
            },
            "required": ["text"],
        },
    },
    {"name": "ping", "description": 'Answer "pong".', "idempotent": True,
     "input_schema": {"type": "object", "properties": {}}},
]  # fmt: skip


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(cli_daemon, "connect", lambda config, **kw: client)
    return client


def test_tools_prints_descriptions_and_arguments(config: Path, fake: FakeClient) -> None:
    result = run("tools", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.splitlines() == [
        "echo 1.0.0",
        '  ping  Answer "pong".  (idempotent)',
        "  say   Repeat text.",
        "        text   string                  required  the text to repeat.",
        "        times  integer                 = 1       how many times.",
        '        mode   "a" | "b"               optional',
        "        tags   array of string | null  optional",
    ]
    as_json = run("tools", "echo", "--json", "--config", str(config))
    assert json.loads(as_json.stdout) == {"echo": TOOLS}
    assert ("tools", "echo") in fake.calls
    none = run("tools", "other", "--config", str(config))
    assert (none.exit_code, none.stdout) == (EXIT_OK, "no tools: other is not running\n")


def test_list_renders_the_table_and_json(config: Path, fake: FakeClient) -> None:
    result = run("list", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.splitlines() == [
        "name  state    version   pid  uptime  restarts  in-flight  queued",
        "echo  running  1.0.0    4242   1m01s         1          0       0",
    ]
    as_json = run("list", "--json", "--config", str(config))
    assert json.loads(as_json.stdout) == [STATUS]
    fake.statuses = []
    assert "no skills in" in run("list", "--config", str(config)).stdout


def test_list_notes_piped_are_one_line_each(config: Path, fake: FakeClient) -> None:
    cause = "start failed: " + "x" * 150 + " (SyntaxError: '(' was never closed)"
    fake.statuses = [dict(STATUS, state="errored", last_exit=cause)]
    result = run("list", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    (note,) = [line for line in result.stdout.splitlines() if line.startswith("echo: ")]
    assert note.endswith("(`zskill start echo` clears it)")  # not wrapped for grep


def test_call_prints_text_as_is_and_the_rest_as_json(config: Path, fake: FakeClient) -> None:
    result = run("call", "echo", "say", "--json", '{"text": "hi", "times": 2}', "--timeout", "5",
                 "--config", str(config))  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout == "hi hi\n"
    assert fake.calls == [("call", ("echo", "say", {"text": "hi", "times": 2}, 5.0))]

    fake.result = {"n": [1, 2], "b": b"\xff"}
    result = run("call", "echo", "stats", "--show-version", "--config", str(config))
    assert json.loads(result.stdout) == {"n": [1, 2], "b": "/w=="}
    assert result.stderr == "echo 1.1.0 in 12 ms\n"


def test_call_passes_its_idempotency_key(config: Path, fake: FakeClient) -> None:
    result = run("call", "echo", "say", "--key", "k-1", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert fake.calls == [("call", ("echo", "say", {}, "k-1"))]
    empty = run("call", "echo", "say", "--key", "", "--config", str(config))
    assert empty.exit_code == EXIT_USAGE
    assert "--key" in empty.stderr


def test_call_errors_print_type_message_and_remote_traceback(
    config: Path, fake: FakeClient
) -> None:
    fake.error = RemoteError(
        "division by zero",
        remote_type="ZeroDivisionError",
        traceback='Traceback (most recent call last):\n  File "main.py"\nZeroDivisionError\n',
    )
    result = run("call", "echo", "div", "--config", str(config))
    assert result.exit_code == EXIT_FAILED
    assert result.stderr.splitlines() == [
        "error: RemoteError: division by zero",
        "  remote type: ZeroDivisionError",
        "Traceback (most recent call last):",
        '  File "main.py"',
        "ZeroDivisionError",
    ]
    fake.error = SkillNotFound("no skill named 'nope'")
    result = run("call", "nope", "x", "--config", str(config))
    assert (result.exit_code, result.stderr) == (
        EXIT_FAILED,
        "error: SkillNotFound: no skill named 'nope'\n",
    )


def test_start_stop_restart_print_one_line(config: Path, fake: FakeClient) -> None:
    out = {op: run(op, "echo", "--config", str(config)) for op in ("start", "stop", "restart")}
    assert all(r.exit_code == EXIT_OK for r in out.values())
    assert out["start"].stdout.startswith("started echo in ")
    assert out["start"].stdout.rstrip().endswith(": running 1.0.0 (pid 4242)")
    assert out["stop"].stdout.startswith("stopped echo in ")
    assert ":" not in out["stop"].stdout
    assert out["restart"].stdout.rstrip().endswith("(pid 4243)")
    as_json = run("restart", "echo", "--json", "--config", str(config))
    assert json.loads(as_json.stdout)["pid"] == 4243


STEPS = [
    {"step": "spawn", "status": "started", "elapsed_s": 0.0, "detail": ""},
    {"step": "spawn", "status": "ok", "elapsed_s": 0.031, "detail": ""},
    {"step": "health", "status": "ok", "elapsed_s": 0.012, "detail": ""},
    {"step": "switch", "status": "ok", "elapsed_s": 0.001, "detail": ""},
    {"step": "drain", "status": "ok", "elapsed_s": 0.25, "detail": ""},
    {"step": "done", "status": "ok", "elapsed_s": 0.0, "detail": ""},
]
REPORT = {"skill": "echo", "old_version": "1.0.0", "new_version": "1.1.0", "release": "r2",
          "duration_s": 0.42, "steps": STEPS, "tools_changed": False}  # fmt: skip


def test_upgrade_prints_steps_and_summary(config: Path, fake: FakeClient) -> None:
    fake.progress, fake.report = STEPS, REPORT
    src = config.parent
    result = run("upgrade", "echo", "--from", str(src), "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert fake.calls == [("upgrade", ("echo", str(src)))]
    assert result.stdout.splitlines() == [
        "✓ spawn      31 ms",
        "✓ health     12 ms",
        "✓ switch      1 ms",
        "✓ drain     250 ms",
        "✓ done        0 ms",
        "echo 1.0.0 -> 1.1.0 in 0.42 s (release r2)",
    ]


def test_upgrade_prints_the_report_steps_when_no_progress_came(
    config: Path, fake: FakeClient
) -> None:
    fake.report = REPORT
    result = run("rollback", "echo", "--config", str(config))
    assert result.exit_code == EXIT_OK
    assert result.stdout.splitlines()[0] == "✓ spawn      31 ms"
    assert len(result.stdout.splitlines()) == 6


def test_failed_upgrade_exits_1_and_says_what_serves(config: Path, fake: FakeClient) -> None:
    fake.progress = [
        {"step": "spawn", "status": "ok", "elapsed_s": 0.03, "detail": ""},
        {"step": "health", "status": "failed", "elapsed_s": 5.0,
         "detail": "health hook returned false"},
        {"step": "rollback", "status": "ok", "elapsed_s": 0.02, "detail": ""},
    ]  # fmt: skip
    fake.error = UpgradeFailed("health check failed: health hook returned false")
    result = run("upgrade", "echo", "--config", str(config))
    assert result.exit_code == EXIT_FAILED
    assert result.stdout.splitlines() == [
        "✓ spawn      30 ms",
        "✗ health     5.0 s  health hook returned false",
        "✓ rollback   20 ms",
    ]
    assert result.stderr.splitlines() == [
        "upgrade failed: health check failed: health hook returned false",
        "rolled back; 1.0.0 still serving",
    ]

    as_json = run("upgrade", "echo", "--json", "--config", str(config))
    assert as_json.exit_code == EXIT_FAILED
    doc = json.loads(as_json.stdout)  # one document, progress included
    assert doc["ok"] is False
    assert doc["progress"] == fake.progress
    assert doc["error"]["type"] == "UpgradeFailed"
    assert doc["serving"] == "1.0.0 still serving"

    as_jsonl = run("upgrade", "echo", "--jsonl", "--config", str(config))
    assert as_jsonl.exit_code == EXIT_FAILED
    lines = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert lines[:3] == fake.progress
    assert lines[3]["error"]["type"] == "UpgradeFailed"


def test_upgrade_json_is_one_document_and_jsonl_streams(config: Path, fake: FakeClient) -> None:
    fake.progress, fake.report = STEPS, REPORT
    result = run("upgrade", "echo", "--json", "--config", str(config))
    assert result.exit_code == EXIT_OK
    assert json.loads(result.stdout) == {**REPORT, "progress": STEPS}
    result = run("upgrade", "echo", "--jsonl", "--config", str(config))
    assert result.exit_code == EXIT_OK
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [*STEPS, REPORT]
    both = run("upgrade", "echo", "--json", "--jsonl", "--config", str(config))
    assert both.exit_code == EXIT_USAGE


def test_releases(config: Path, fake: FakeClient) -> None:
    result = run("releases", "echo", "--config", str(config))
    assert result.exit_code == EXIT_OK
    assert [line.rstrip() for line in result.stdout.splitlines()] == [
        "   id  version  source",
        "*  r1  1.0.0    skills/echo",
    ]
    assert (
        json.loads(run("releases", "echo", "--json", "--config", str(config)).stdout)[0]["id"]
        == "r1"
    )


def test_events_history_then_follow_without_duplicates(config: Path, fake: FakeClient) -> None:
    fake.history = [
        {"seq": 1, "time": 0.0, "skill": "echo", "type": "started", "data": {"version": "1.0.0"}},
        {"seq": 2, "time": 1.5, "skill": "echo", "type": "upgraded",
         "data": {"old": "1.0.0", "new": "1.1.0"}},
    ]  # fmt: skip
    fake.stream = FakeStream(
        [
            Event(2, 1.5, "echo", "upgraded", {}),  # also in the history
            None,
            Event(3, 2.0, "echo", "stopped", {"reason": "asked"}),
        ]
    )
    result = run("events", "-f", "--skill", "echo", "-n", "10", "--config", str(config))
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.splitlines() == [
        "1970-01-01 00:00:00.000 echo started version=1.0.0",
        "1970-01-01 00:00:01.500 echo upgraded old=1.0.0 new=1.1.0",
        "1970-01-01 00:00:02.000 echo stopped reason=asked",
    ]
    assert ("subscribe", "echo") in fake.calls
    assert ("events", ("echo", 10)) in fake.calls
    assert fake.stream.closed

    as_json = run("events", "--json", "--config", str(config))
    assert [event["seq"] for event in json.loads(as_json.stdout)] == [1, 2]
    as_jsonl = run("events", "--jsonl", "--config", str(config))
    assert [json.loads(line)["seq"] for line in as_jsonl.stdout.splitlines()] == [1, 2]
    follow_json = run("events", "-f", "--json", "--config", str(config))
    assert follow_json.exit_code == EXIT_USAGE


def test_down_waits_for_the_daemon_process_to_exit(config: Path, fake: FakeClient) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake.ping = lambda timeout=2.0: {"pid": proc.pid}  # type: ignore[method-assign]
        fake.on_shutdown = proc.terminate
        result = run("down", "--config", str(config))
        assert result.exit_code == EXIT_OK, result.output
        assert result.stdout == "zskill daemon stopped\n"
        assert ("shutdown", None) in fake.calls
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_down_gives_up_after_its_timeout(config: Path, fake: FakeClient) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake.ping = lambda timeout=2.0: {"pid": proc.pid}  # type: ignore[method-assign]
        result = run("down", "--timeout", "0.3", "--config", str(config))
        assert result.exit_code == EXIT_FAILED
        assert f"the daemon (pid {proc.pid}) still runs after 0.3 s" in result.stderr
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --- up --detach ------------------------------------------------------------------------


def test_detached_daemon_that_exits_first_shows_its_output(config: Path) -> None:
    cfg = load(config)
    code = "import sys; print('cannot start: run dir locked'); sys.exit(4)"
    with pytest.raises(cli_daemon.DetachFailed) as err:
        cli_daemon.start_detached(cfg, timeout_s=20, argv=[sys.executable, "-c", code])
    assert "exited with code 4" in err.value.message
    assert "cannot start: run dir locked" in err.value.message
    assert (cfg.run_dir / "logs" / "zskilld.out").is_file()


def test_up_detach_refuses_when_a_daemon_answers(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_daemon, "ping_quietly", lambda cfg: {"pid": 77})
    result = run("up", "--detach", "--config", str(config))
    assert result.exit_code == EXIT_FAILED
    assert "already runs" in result.stderr
    assert "(pid 77)" in result.stderr


def test_daemon_process_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        watch = cli_daemon.DaemonProcess(proc.pid)
        assert not watch.wait_gone(0.2)
        proc.terminate()
        assert watch.wait_gone(10)  # a zombie (not reaped yet) counts as gone
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert cli_daemon.DaemonProcess(proc.pid).gone()


def test_config_file_for_the_tests_is_valid(config: Path) -> None:
    cfg = load(config)
    assert cfg.run_dir == config.parent / "run"
    assert textwrap.dedent(CONFIG).strip().startswith("[daemon]")
