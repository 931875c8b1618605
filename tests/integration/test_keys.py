"""Idempotency keys against real daemons and skill processes: a keyed call
runs once however often it is sent, a duplicate waits for the first, an
unknown outcome stays unknown, and the keys outlive the daemon (a graceful
down/up and a SIGKILL). The test skill counts its side effects in a file.
And the trace context: a span in the skill joins the caller's trace."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Daemon, short_dir, wait_for

from orchestrator import DaemonUnavailable, KeyConflict, OutcomeUnknown, RemoteError, ZskillError

COUNTER = '''
import os
import time
from pathlib import Path

from skills import Skill

skill = Skill("counter", version="1.0.0")
EFFECTS = Path(os.environ["EFFECTS"])


def effect(item: str) -> int:
    with EFFECTS.open("a") as f:
        f.write(item + "\\n")
    return len(EFFECTS.read_text().splitlines())


@skill.tool()
def bump(item: str, sleep_s: float = 0.0) -> dict:
    """Record a side effect, then take sleep_s seconds."""
    n = effect(item)
    time.sleep(sleep_s)
    return {"item": item, "effects": n}


@skill.tool()
def bump_then_fail(item: str) -> None:
    """Record a side effect, then raise."""
    effect(item)
    raise ValueError(f"failed after {item}")


if __name__ == "__main__":
    skill.run()
'''


class Counter:
    """A daemon serving the counter skill from ``root``; keeps its run dir."""

    def __init__(self, root: Path, **daemon: Any) -> None:
        src = root / "counter"
        src.mkdir(exist_ok=True)
        (src / "main.py").write_text(COUNTER)
        self.effects = root / "effects.txt"
        self.effects.touch()
        table = {
            "path": str(src),
            "command": ["python", "main.py"],
            "env": {"EFFECTS": str(self.effects)},
            "concurrency": 4,
            "grace_s": 5,
            "backoff_s": 0.1,
        }
        self.daemon = Daemon(root, {"counter": table}, daemon)

    def lines(self) -> list[str]:
        return self.effects.read_text().splitlines()


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def counter(root: Path) -> Iterator[Counter]:
    c = Counter(root)
    c.daemon.start()
    c.daemon.wait_running("counter")
    yield c
    c.daemon.stop()


def test_a_keyed_call_sent_three_times_runs_once(counter: Counter) -> None:
    client = counter.daemon.client()
    answers = [client.call("counter", "bump", {"item": "a"}, key="k-a") for _ in range(3)]
    assert answers == [{"item": "a", "effects": 1}] * 3
    assert counter.lines() == ["a"]
    # Without a key, the same call runs every time; another key runs anew.
    client.call("counter", "bump", {"item": "a"})
    client.call("counter", "bump", {"item": "a"}, key="k-other")
    assert counter.lines() == ["a", "a", "a"]
    # A remote error is recorded too: the retry gets it without running.
    for _ in range(2):
        with pytest.raises(RemoteError, match="failed after f"):
            client.call("counter", "bump_then_fail", {"item": "f"}, key="k-f")
    assert counter.lines().count("f") == 1


def test_concurrent_duplicates_run_once_and_get_the_same_answer(counter: Counter) -> None:
    client = counter.daemon.client()
    results: list[Any] = []

    def send() -> None:
        results.append(
            client.call_detailed("counter", "bump", {"item": "c", "sleep_s": 1.0}, key="k-c")
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    threads[0].start()
    wait_for(lambda: counter.lines() == ["c"], 10, what="the first call to run")
    threads[1].start()  # while the first one still runs
    for t in threads:
        t.join(20)
    assert len(results) == 2
    assert results[0].value == results[1].value == {"item": "c", "effects": 1}
    assert results[0].version == results[1].version == "1.0.0"
    assert counter.lines() == ["c"]


def test_a_process_killed_mid_call_leaves_the_key_unknown_for_good(counter: Counter) -> None:
    client = counter.daemon.client()
    pid = counter.daemon.wait_running("counter")["counter"]["pid"]
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            client.call("counter", "bump", {"item": "u", "sleep_s": 30.0}, key="k-u")
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=send)
    t.start()
    wait_for(lambda: counter.lines() == ["u"], 10, what="the call to start")
    os.kill(pid, signal.SIGKILL)
    t.join(20)
    assert len(outcome) == 1 and isinstance(outcome[0], OutcomeUnknown), outcome
    # The skill is back; the retry is answered without running the tool.
    wait_for(
        lambda: counter.daemon.status("counter")["pid"] not in (None, pid),
        20,
        what="a new process",
    )
    counter.daemon.wait_running("counter")
    with pytest.raises(OutcomeUnknown, match="k-u"):
        client.call("counter", "bump", {"item": "u", "sleep_s": 30.0}, key="k-u")
    assert counter.lines() == ["u"]


def test_the_same_key_with_other_arguments_is_refused(counter: Counter) -> None:
    client = counter.daemon.client()
    client.call("counter", "bump", {"item": "x"}, key="k-x")
    with pytest.raises(KeyConflict, match="other arguments"):
        client.call("counter", "bump", {"item": "y"}, key="k-x")
    with pytest.raises(KeyConflict, match="the tool 'bump'"):
        client.call("counter", "bump_then_fail", {"item": "x"}, key="k-x")
    # The order of the arguments is no difference.
    a = client.call("counter", "bump", {"item": "o", "sleep_s": 0.0}, key="k-o")
    b = client.call("counter", "bump", {"sleep_s": 0.0, "item": "o"}, key="k-o")
    assert a == b
    assert counter.lines() == ["x", "o"]


def test_keys_survive_a_graceful_restart_and_a_sigkill_of_the_daemon(root: Path) -> None:
    c = Counter(root)
    d = c.daemon
    try:
        d.start()
        d.wait_running("counter")
        client = d.client()
        first = client.call("counter", "bump", {"item": "g"}, key="k-g")
        d.stop()  # SIGTERM: zskill down's graceful stop
        d.start()
        d.wait_running("counter")
        client = d.client()
        assert client.call("counter", "bump", {"item": "g"}, key="k-g") == first
        assert client.call("counter", "bump", {"item": "h"}, key="k-h") == {
            "item": "h",
            "effects": 2,
        }
        assert d.proc is not None
        d.known_pids |= d.skill_pids()
        d.proc.kill()  # SIGKILL: no chance to write anything more
        d.proc.wait(10)
        d.proc = None
        d.start()
        d.wait_running("counter")
        client = d.client()
        assert client.call("counter", "bump", {"item": "g"}, key="k-g") == first
        assert client.call("counter", "bump", {"item": "h"}, key="k-h")["effects"] == 2
        assert c.lines() == ["g", "h"]
    finally:
        d.stop()


def test_the_bound_evicts_the_oldest_keys(root: Path) -> None:
    c = Counter(root, idempotency_max_keys=3)
    d = c.daemon
    try:
        d.start()
        d.wait_running("counter")
        client = d.client()
        for item in "abcd":
            client.call("counter", "bump", {"item": item}, key=f"k-{item}")
        # d, c, b are kept; a, the oldest, is gone: it runs again.
        for item in "dcb":
            client.call("counter", "bump", {"item": item}, key=f"k-{item}")
        assert c.lines() == ["a", "b", "c", "d"]
        client.call("counter", "bump", {"item": "a"}, key="k-a")
        assert c.lines() == ["a", "b", "c", "d", "a"]
    finally:
        d.stop()


def test_zskill_call_takes_a_key(counter: Counter) -> None:
    argv = [sys.executable, "-m", "orchestrator", "call", "counter", "bump"]
    argv += ["--json", '{"item": "cli"}', "--key", "k-cli", "--config", str(counter.daemon.config)]
    outs = [subprocess.run(argv, capture_output=True, text=True, timeout=30) for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs
    assert outs[0].stdout == outs[1].stdout
    assert counter.lines() == ["cli"]
    argv[argv.index('{"item": "cli"}')] = '{"item": "other"}'
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "KeyConflict" in out.stderr


def test_a_call_running_when_the_daemon_is_killed_stays_unknown(root: Path) -> None:
    c = Counter(root)
    d = c.daemon
    try:
        d.start()
        d.wait_running("counter")
        client = d.client()
        outcome: list[BaseException] = []

        def send() -> None:
            try:
                client.call("counter", "bump", {"item": "r", "sleep_s": 1.0}, key="k-r")
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=send)
        t.start()
        wait_for(lambda: c.lines() == ["r"], 10, what="the call to start")
        assert d.proc is not None
        d.known_pids |= d.skill_pids()
        d.proc.kill()
        d.proc.wait(10)
        t.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], DaemonUnavailable), outcome
        d.proc = None
        d.start()
        d.wait_running("counter")
        with pytest.raises(OutcomeUnknown, match="daemon stopped"):
            d.client().call("counter", "bump", {"item": "r", "sleep_s": 1.0}, key="k-r")
        assert c.lines() == ["r"]
    finally:
        d.stop()


TRACED = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from skills import Skill

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("tracer-skill")
skill = Skill("tracer", version="3.1.0")


@skill.tool()
def where() -> dict:
    \"\"\"The span the call runs in, and one of the handler's own.\"\"\"
    outer = trace.get_current_span()
    with tracer.start_as_current_span("inner") as inner:
        own = inner.get_span_context()
        return {
            "trace_id": f"{own.trace_id:032x}",
            "inner_parent": f"{inner.parent.span_id:016x}",
            "outer_id": f"{outer.get_span_context().span_id:016x}",
            "outer_parent": f"{outer.parent.span_id:016x}" if outer.parent else None,
            "outer_name": outer.name,
            "attributes": dict(outer.attributes),
        }


if __name__ == "__main__":
    skill.run()
"""


def test_a_span_in_the_skill_joins_the_caller_s_trace(root: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra")
    from opentelemetry.sdk.trace import TracerProvider

    src = root / "tracer"
    src.mkdir()
    (src / "main.py").write_text(TRACED)
    d = Daemon(root, {"tracer": {"path": str(src), "command": ["python", "main.py"]}})
    try:
        d.start()
        st = d.wait_running("tracer")
        client = d.client()
        with TracerProvider().get_tracer("test").start_as_current_span("task") as span:
            ctx = span.get_span_context()
            got = client.call("tracer", "where")  # the context taken from the current span
        assert got["trace_id"] == f"{ctx.trace_id:032x}"
        assert got["outer_parent"] == f"{ctx.span_id:016x}"
        assert got["inner_parent"] == got["outer_id"]
        assert got["outer_name"] == "tracer.where"
        assert got["attributes"] == {
            "zskill.skill": "tracer",
            "zskill.tool": "where",
            "zskill.version": "3.1.0",
            "zskill.instance": st["tracer"]["instances"][0]["instance"],
        }
        # Without a trace context the call still runs in a span: a new trace.
        alone = client.call("tracer", "where", traceparent=None)
        assert alone["outer_parent"] is None and alone["trace_id"] != got["trace_id"]
    finally:
        d.stop()


def test_keys_hold_through_sigkills_of_the_daemon_under_load(root: Path) -> None:
    """Four callers send keyed calls while the daemon is SIGKILLed at a random
    instant, three times. Then every answer a caller got is what a retry
    gets, every side effect happened once, and a retry of one that ran
    unanswered is OutcomeUnknown (or its recorded result), never a new run."""
    c = Counter(root)
    d = c.daemon
    answers: dict[str, Any] = {}
    rng = random.Random(12)

    def caller(name: str, stop: threading.Event) -> None:
        client = d.client()
        n = 0
        while not stop.is_set():
            key = f"{name}-{n}"
            with contextlib.suppress(ZskillError):
                answers[key] = client.call("counter", "bump", {"item": key}, key=key, timeout=5)
            n += 1

    try:
        for run in range(2):
            d.start()
            d.wait_running("counter")
            stop = threading.Event()
            callers = [threading.Thread(target=caller, args=(f"{run}{i}", stop)) for i in range(4)]
            for t in callers:
                t.start()
            time.sleep(rng.uniform(0.3, 1.0))  # a random instant, not a synchronisation
            assert d.proc is not None
            d.known_pids |= d.skill_pids()
            d.proc.kill()
            d.proc.wait(10)
            d.proc = None
            stop.set()
            for t in callers:
                t.join(30)
        d.start()
        d.wait_running("counter")
        client = d.client()
        ran = c.lines()
        assert len(ran) == len(set(ran)) >= len(answers) > 0
        for key, answer in answers.items():
            assert client.call("counter", "bump", {"item": key}, key=key) == answer
        for item in set(ran) - set(answers):
            with contextlib.suppress(OutcomeUnknown):
                client.call("counter", "bump", {"item": item}, key=item)
        assert c.lines() == ran  # no retry ran anything again
    finally:
        d.stop()
