"""The core agent loop against a real daemon and real skill processes: a
scripted model (tests/agent_app/loop.py), the loop in a subprocess killed by
pid, skills upgraded live, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, Daemon, running_daemon, wait_for

pytest.importorskip("pydantic_ai", reason="the agent extra is not installed")
pytest.importorskip("dbos", reason="the agent extra is not installed")

APP = REPO / "tests" / "agent_app"


def ledger_table(ledger: Path, **env: str) -> dict[str, Any]:
    return {
        "path": str(APP / "ledger"),
        "command": ["python", "main.py"],
        "env": {"LEDGER_FILE": str(ledger), **env},
        "start_timeout_s": 15,
        "grace_s": 5,
    }


def release(parent: Path, n: int) -> Path:
    """Release n of the ledger skill: version 1.n.0, with a tool probe_vN."""
    dest = parent / f"ledger-{n}"
    shutil.copytree(APP / "ledger", dest, ignore=shutil.ignore_patterns("__pycache__"))
    main = dest / "main.py"
    code = main.read_text().replace('"LEDGER_VERSION", "1.0.0"', f'"LEDGER_VERSION", "1.{n}.0"')
    probe = f'@skill.tool()\ndef probe_v{n}() -> int:\n    """Release {n}."""\n    return {n}\n'
    main.write_text(
        code.replace('if __name__ == "__main__":', probe + '\n\nif __name__ == "__main__":')
    )
    return dest


@pytest.fixture
def ledger_daemon() -> Iterator[tuple[Daemon, Path]]:
    from tests.helpers import short_dir

    ledger = short_dir("zsl") / "ledger.txt"
    with running_daemon({"ledger": ledger_table(ledger, LEDGER_DELAY_S="0.01")}) as d:
        d.wait_running("ledger")
        yield d, ledger
    shutil.rmtree(ledger.parent, ignore_errors=True)


def loop_env(d: Daemon, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ZSKILL_CONFIG=str(d.config), PYTHONUNBUFFERED="1", **extra)
    return env


def start_loop(d: Daemon, task_id: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP / "loop.py"), str(d.config), task_id],
        cwd=d.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def zskill(
    d: Daemon, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--config", str(d.config)],
        cwd=d.root,
        env=env or loop_env(d),
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def progress(proc: subprocess.Popen[str], ledger: Path, steps: int) -> None:
    """Wait for the loop to make ``steps`` more steps (or to end)."""
    target = len(lines(ledger)) + steps
    wait_for(
        lambda: len(lines(ledger)) >= target or proc.poll() is not None,
        timeout=40,
        what="the loop to make progress",
    )


@pytest.mark.timeout(120)
def test_a_long_task_survives_kills_of_its_loop_and_skill_upgrades(
    ledger_daemon: tuple[Daemon, Path],
) -> None:
    d, ledger = ledger_daemon
    steps, kills = 50, 5
    tools_seen = d.root / "tools.txt"
    env = loop_env(d, AGENT_STEPS=str(steps), AGENT_TOOLS_FILE=str(tools_seen))
    rng = random.Random(os.environ.get("AGENT_SEED", "12"))
    client = d.client(timeout=30)
    releases = d.root / "releases"
    releases.mkdir()
    pool = ThreadPoolExecutor(1)
    for n in range(1, kills + 1):
        proc = start_loop(d, "t-long", env)
        progress(proc, ledger, rng.randint(3, 6))
        assert proc.poll() is None, f"the task ended before kill {n}:\n{proc.communicate()[0]}"
        # A live upgrade while the loop calls the skill, and a kill at a
        # random instant of a step during it.
        # Each release drops the last one's probe tool: a breaking change, on purpose.
        upgrade = pool.submit(
            client.upgrade, "ledger", from_dir=release(releases, n), allow_breaking=True
        )
        progress(proc, ledger, rng.randint(1, 3))
        assert proc.poll() is None, f"the task ended before kill {n}:\n{proc.communicate()[0]}"
        wait_for(lambda: rng.random() < 0.2, interval=0.003)  # a random instant
        proc.kill()
        proc.wait(10)
        report = upgrade.result(timeout=60)
        assert report.get("ok", True), report

    proc = start_loop(d, "t-long", env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"done after {steps} steps" in out

    # The side effect happened exactly once per step.
    recorded = Counter(int(line.split()[0]) for line in lines(ledger))
    assert recorded == Counter(range(steps)), recorded
    versions = {line.split()[1] for line in lines(ledger)}
    assert {"1.0.0", f"1.{kills}.0"} <= versions, versions

    # Each model request ran once, but for the one in flight at each kill.
    requests = [int(line.split()[0]) for line in lines(tools_seen)]
    assert sorted(set(requests)) == list(range(steps + 1))
    assert len(requests) <= steps + 1 + kills, Counter(requests)
    # The tool list is the live one: after release 5 it has probe_v5 only.
    last = lines(tools_seen)[-1].split()[1:]
    assert f"ledger__probe_v{kills}" in last and "ledger__probe_v1" not in last, last

    show = zskill(d, "task", "show", "t-long", "--json")
    assert show.returncode == 0, show.stderr
    task = json.loads(show.stdout)
    assert task["state"] == "done" and task["output"].startswith(f"done after {steps}")
    tools = [s for s in task["trajectory"] if s["kind"] == "tool"]
    assert len(tools) == steps and all(s["outcome"] == "ok" for s in tools)
    assert len({s["skill_version"] for s in tools}) >= 3


def test_a_remote_error_reaches_the_model_and_the_task_goes_on(
    ledger_daemon: tuple[Daemon, Path],
) -> None:
    d, _ = ledger_daemon
    spans = d.root / "spans.jsonl"
    env = loop_env(d, AGENT_STEPS="3", AGENT_FAIL_AT="1", AGENT_SPANS_FILE=str(spans))
    proc = start_loop(d, "t-err", env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    # Step 1 called ledger__fail; the model was told, and went on.
    assert "done after 3 steps" in out and "ledger.fail failed: ValueError: boom" in out, out
    task = json.loads(zskill(d, "task", "show", "t-err", "--json").stdout)
    failed = [s for s in task["trajectory"] if s["kind"] == "tool" and s["outcome"] == "error"]
    assert [s["name"] for s in failed] == ["ledger__fail"]
    assert "ValueError: boom" in failed[0]["detail"]
    # Each step a span, with the loop and skill versions (OpenTelemetry installed).
    made = [json.loads(line) for line in lines(spans)]
    assert [m["name"] for m in made].count("agent.model_request") == 4
    calls = [m["attributes"] for m in made if m["name"] == "agent.tool_call"]
    assert [(c["zskill.tool"], c["zskill.outcome"]) for c in calls] == [
        ("record", "ok"),
        ("fail", "error"),
        ("record", "ok"),
    ]
    assert all(c["zskill.task"] == "t-err" and c["zskill.loop_version"] for c in calls)
    assert calls[0]["zskill.skill_version"] == "1.0.0"


@pytest.mark.timeout(150)
def test_the_cli_runs_lists_cancels_and_resumes_tasks(ledger_daemon: tuple[Daemon, Path]) -> None:
    d, ledger = ledger_daemon
    env = loop_env(
        d, AGENT_STEPS="3", PYTHONPATH=f"{APP}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    run = zskill(d, "agent", "run", "loop:agent", "keep the ledger", "--task-id", "t-cli", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("done after 3 steps")
    again = zskill(
        d, "agent", "run", "loop:agent", "keep the ledger", "--task-id", "t-cli", env=env
    )
    assert again.returncode == 0 and again.stdout == run.stdout
    assert len(lines(ledger)) == 3  # the recorded output, nothing ran again

    listed = json.loads(zskill(d, "tasks", "--json").stdout)
    (task,) = [t for t in listed if t["id"] == "t-cli"]
    assert task["state"] == "done" and task["steps"] == 7 and task["loop_version"]
    assert set(task) >= {"id", "state", "steps", "started", "updated", "loop_version"}

    # A task interrupted (its loop killed), cancelled, then resumed by the CLI.
    slow = {**env, "AGENT_STEPS": "40"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "agent",
            "run",
            "loop:agent",
            "keep the ledger",
            "--task-id",
            "t-resume",
            "--config",
            str(d.config),
        ],
        cwd=d.root,
        env=slow,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: len(lines(ledger)) >= 6, timeout=40, what="progress")
    proc.kill()
    proc.wait(10)
    listed = json.loads(zskill(d, "tasks", "--json").stdout)
    assert {t["id"]: t["state"] for t in listed}["t-resume"] == "interrupted"
    cancelled = zskill(d, "task", "cancel", "t-resume")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
    resumed = zskill(d, "task", "resume", "t-resume", env=slow)
    assert resumed.returncode == 0, resumed.stderr
    assert "done after 40 steps" in resumed.stdout
    steps = Counter(int(line.split()[0]) for line in lines(ledger)[3:])
    assert set(steps) == set(range(40))


def test_bad_input_is_a_clear_error(ledger_daemon: tuple[Daemon, Path]) -> None:
    d, _ = ledger_daemon
    bad = zskill(d, "agent", "run", "no_such_module:agent", "hi")
    assert bad.returncode == 2 and "no module named 'no_such_module'" in bad.stderr
    missing = zskill(d, "task", "show", "t-nope")
    assert missing.returncode == 2 and "no task 't-nope'" in missing.stderr
    d.config.write_text(d.config.read_text() + '\n[agent]\ndatabase_url = "mysql://db/x"\n')
    wrong = zskill(d, "tasks")
    assert wrong.returncode == 2 and "use sqlite:///PATH or postgresql://" in wrong.stderr
    d.config.write_text(
        d.config.read_text().replace("mysql://db/x", "postgresql://zs@127.0.0.1:1/none")
    )
    unreachable = zskill(d, "tasks")
    assert unreachable.returncode == 2 and "cannot open the task database" in unreachable.stderr


class FakeOpenAI:
    """A local OpenAI-compatible endpoint (the Responses API): it asks for
    ledger__record twice, then answers; it keeps every request it got."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body})
                reply = json.dumps(fake.reply(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """A Responses API answer (what ``openai:`` models speak)."""
        results = [i for i in body["input"] if i.get("type") == "function_call_output"]
        if len(results) < 2:
            n = len(results)
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_{n}",
                "call_id": f"call_{n}",
                "name": "ledger__record",
                "arguments": json.dumps({"step": n}),
                "status": "completed",
            }
        else:
            text = f"done: {results[-1]['output']}"
            item = {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        return {
            "id": f"resp_{len(self.requests)}",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": body["model"],
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15,
            },
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_openai_model_through_a_compatible_endpoint(ledger_daemon: tuple[Daemon, Path]) -> None:
    d, ledger = ledger_daemon
    fake = FakeOpenAI()
    try:
        env = loop_env(d, AGENT_MODEL="openai", OPENAI_BASE_URL=fake.url, OPENAI_API_KEY="test")
        proc = start_loop(d, "t-openai", env)
        out, _ = proc.communicate(timeout=60)
    finally:
        fake.close()
    assert proc.returncode == 0, out
    assert "done: recorded 1 on 1.0.0" in out
    assert [line.split()[0] for line in lines(ledger)] == ["0", "1"]
    first = fake.requests[0]
    assert first["path"] == "/v1/responses" and first["body"]["model"] == "gpt-test"
    tools = {t["name"]: t for t in first["body"]["tools"]}
    record = tools["ledger__record"]
    assert record["parameters"]["properties"]["step"]["type"] == "integer"
    assert record["description"].startswith("Write one line for this step")
    task = json.loads(zskill(d, "task", "show", "t-openai", "--json").stdout)
    assert [s["name"] for s in task["trajectory"] if s["kind"] == "model"] == ["gpt-test"] * 3


def read_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float = 60) -> str:
    """The first line of ``proc``'s output that starts with ``prefix``."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no line starting {prefix!r} from pid {proc.pid}")


@pytest.mark.timeout(150)
def test_two_workers_on_postgresql_share_tasks_and_finish_a_killed_ones(
    ledger_daemon: tuple[Daemon, Path],
) -> None:
    from tests.postgres import find_bin, postgres

    if find_bin() is None:
        pytest.skip("PostgreSQL is not installed here (scripts/test installs it as root)")
    from orchestrator.agent.tasks import TaskStore

    d, ledger = ledger_daemon
    steps, tasks = 12, 4
    with postgres() as url:
        d.config.write_text(
            d.config.read_text()
            + f'\n[agent]\nagent = "loop:agent"\ndatabase_url = "{url}"\nconcurrency = 2\n'
        )
        env = loop_env(
            d,
            AGENT_STEPS=str(steps),
            PYTHONPATH=f"{APP}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        )
        cmd = [sys.executable, "-m", "orchestrator", "agent", "worker", "--config", str(d.config)]
        workers = [
            subprocess.Popen(cmd, cwd=d.root, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        try:
            ids = [read_line(w, "worker ").split()[1].rstrip(":") for w in workers]
            with TaskStore(url) as store:
                for n in range(tasks):
                    store.submit("keep the ledger", f"t-pg-{n}", "loop:agent")

                def owners() -> dict[str, str]:
                    found = store.client.list_workflows(status="PENDING", load_input=False)
                    return {w.workflow_id: w.executor_id for w in found}

                # Both workers took tasks (two each, their concurrency).
                shared = wait_for(
                    lambda: (o := owners()) and set(o.values()) == set(ids) and o,
                    timeout=60,
                    what="both workers running tasks",
                )
                wait_for(lambda: len(lines(ledger)) >= 4, timeout=30, what="progress")
                victim = workers[0]
                victim.kill()
                victim.wait(10)
                orphans = [t for t, owner in shared.items() if owner == ids[0]]
                assert orphans

                def finished() -> bool:
                    return all(store.get(f"t-pg-{n}").state == "done" for n in range(tasks))

                wait_for(finished, timeout=90, what="every task done")
                done = store.client.list_workflows(workflow_ids=orphans, load_input=False)
                assert {w.executor_id for w in done} == {ids[1]}
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
                    w.wait(30)
    per_task: dict[str, Counter[int]] = {}
    for line in lines(ledger):
        step, _version, task = line.split()
        per_task.setdefault(task, Counter())[int(step)] += 1
    assert per_task == {f"t-pg-{n}": Counter(range(steps)) for n in range(tasks)}


@pytest.mark.timeout(150)
def test_a_loop_upgrade_mid_task_loses_and_repeats_nothing(
    ledger_daemon: tuple[Daemon, Path],
) -> None:
    """Blue-green for the loop: version 2's worker starts beside version 1's,
    which is then retired (SIGTERM) mid-task; the task goes on on version 2
    from its last completed step."""
    from orchestrator.agent.tasks import TaskStore

    d, ledger = ledger_daemon
    steps = 40
    d.config.write_text(d.config.read_text() + '\n[agent]\nagent = "loop:agent"\n')
    env = loop_env(
        d,
        AGENT_STEPS=str(steps),
        AGENT_STEP_S="0.5",
        PYTHONPATH=f"{APP}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    cmd = [sys.executable, "-m", "orchestrator", "agent", "worker", "--config", str(d.config)]

    def worker(version: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            cmd,
            cwd=d.root,
            env={**env, "ZSKILL_LOOP_VERSION": version},
            stdout=subprocess.PIPE,
            text=True,
        )

    old = worker("v1")
    new: subprocess.Popen[str] | None = None
    try:
        read_line(old, "worker ")
        with TaskStore(f"sqlite:///{d.run_dir / 'agent.sqlite'}") as store:
            store.submit("keep the ledger", "t-up", "loop:agent")
            wait_for(lambda: len(lines(ledger)) >= 2, timeout=60, what="progress on v1")
            new = worker("v2")
            read_line(new, "worker ")
            old.send_signal(signal.SIGTERM)
            read_line(old, "retired")
            assert old.wait(30) == 0
            wait_for(lambda: store.get("t-up").state == "done", timeout=90, what="t-up done")
            trajectory = store.trajectory("t-up")
    finally:
        for w in (old, new):
            if w is not None and w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(30)
    recorded = Counter(int(line.split()[0]) for line in lines(ledger))
    assert recorded == Counter(range(steps)), recorded
    tools = [s for s in trajectory if s.kind == "tool"]
    assert len(tools) == steps and all(s.outcome == "ok" for s in tools)
    versions = [s.loop_version for s in trajectory]
    # v1 up to some step, v2 from the next one on: nothing ran twice.
    switch = versions.index("v2")
    assert set(versions[:switch]) == {"v1"} and set(versions[switch:]) == {"v2"}
    assert 2 <= switch < len(versions)
