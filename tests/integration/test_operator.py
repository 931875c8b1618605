"""Operator experience with real daemons and skill processes: ``zskill list``
against what the processes really are, logs (both streams, version tags,
rotation, following through an upgrade), events across a daemon restart,
the dashboard (one frame, and live in a real terminal under tmux), and the
Prometheus endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import (
    EXAMPLES,
    ZSKILL,
    Daemon,
    example,
    running_daemon,
    short_dir,
    variant,
    wait_for,
    zskill,
)
from prometheus_client.parser import text_string_to_metric_families

# A release of echo that prints on both streams: what the log tests read.
TALKER = """
import sys as _sys


@skill.tool()
def shout(text: str) -> str:
    \"\"\"Print text on stdout and again on stderr.\"\"\"
    print(f"out {text}")
    print(f"err {text}", file=_sys.stderr)
    return text
"""


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = short_dir("zo")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def status(d: Daemon, skill: str) -> dict[str, Any]:
    return d.status(skill)


# --- zskill list ------------------------------------------------------------------------


def test_list_fields_match_reality() -> None:
    skills = {
        "echo": example("echo"),
        "slow": example("slow", concurrency=2),
        "clock": example("clock", max_restarts=0, backoff_s=0.1),
    }
    with running_daemon(skills) as d:
        st = d.wait_running("echo", "slow", "clock")
        c = d.client()
        # pid: the live process of that skill, started from its path.
        for name in skills:
            p = psutil.Process(st[name]["pid"])
            assert p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            assert p.cwd() == str(EXAMPLES / name)
            assert st[name]["version"] == "1.0.0" and st[name]["restarts"] == 0
        assert c.call_detailed("echo", "say", {"text": "x"}).version == "1.0.0"

        # in-flight and queued while slow calls run: 2 run (its concurrency), 3 wait.
        results: list[Any] = []

        def sleep() -> None:
            results.append(c.call("slow", "sleep", {"seconds": 1.5}))

        threads = [threading.Thread(target=sleep) for _ in range(5)]
        for t in threads:
            t.start()
        wait_for(
            lambda: (lambda s: s["in_flight"] == 2 and s["queued"] == 3)(status(d, "slow")),
            10,
            what="slow: 2 in flight, 3 queued",
        )
        for t in threads:
            t.join(30)
        assert results == [1.5] * 5
        s = status(d, "slow")
        assert s["in_flight"] == 0 and s["queued"] == 0
        assert s["calls_per_s"] > 0 and s["p50_ms"] >= 1000 and s["p99_ms"] >= s["p50_ms"]
        assert s["errors"] == 0
        wait_for(lambda: status(d, "slow")["rss_bytes"] > 10_000_000, 10, what="rss sampled")

        # restarts after a SIGKILL: counted, a new pid, the exit reason kept.
        old = st["echo"]["pid"]
        os.kill(old, signal.SIGKILL)
        s = wait_for(
            lambda: (lambda s: s if s["state"] == "running" and s["pid"] != old else None)(
                status(d, "echo")
            ),
            20,
            what="echo restarted",
        )
        d.known_pids.add(s["pid"])
        assert s["restarts"] == 1
        assert "SIGKILL" in s["last_exit"]
        assert psutil.pid_exists(s["pid"]) and not psutil.pid_exists(old)

        # errored (max_restarts = 0): the table says why.
        os.kill(st["clock"]["pid"], signal.SIGKILL)
        wait_for(lambda: status(d, "clock")["state"] == "errored", 20, what="clock errored")
        out = zskill(d.config, "list")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["name", "state", "version", "pid", "uptime", "restarts",
                                    "cpu", "mem", "in-flight", "queued", "calls/s", "p50", "p99",
                                    "errors"]  # fmt: skip
        row = next(ln.split() for ln in lines if ln.startswith("echo "))
        assert row[:6] == ["echo", "running", "1.0.0", str(s["pid"]), row[4], "1"]
        assert any(
            ln.startswith("clock: errored; last exit: ") and "SIGKILL" in ln for ln in lines
        ), out.stdout
        as_json = json.loads(zskill(d.config, "list", "--json").stdout)
        assert {r["name"]: r["state"] for r in as_json} == {
            "echo": "running",
            "slow": "running",
            "clock": "errored",
        }


# --- logs ---------------------------------------------------------------------------------


def log_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_logs_capture_both_streams_with_version_tags_and_rotate(tmp: Path) -> None:
    talker = variant(tmp, "talker", version="2.0.0", extra=TALKER)
    skills = {"echo": example("echo", path=str(talker))}
    with running_daemon(skills, {"log_max_bytes": 2048, "log_keep": 2}) as d:
        pid = d.wait_running("echo")["echo"]["pid"]
        c = d.client()
        logs = d.run_dir / "logs"
        c.call("echo", "shout", {"text": "first"})
        wait_for(lambda: len(log_records(logs / "echo.log")) >= 2, 10, what="two records")
        recs = log_records(logs / "echo.log")
        mine = {(r["stream"], r["line"]) for r in recs}
        assert {("out", "out first"), ("err", "err first")} <= mine
        for r in recs:
            if r["line"].endswith("first"):
                assert r["version"] == "2.0.0" and r["pid"] == pid and r["t"] > 0

        # Enough output for several rotations: 2 KiB files, 2 old ones kept.
        for i in range(40):
            c.call("echo", "shout", {"text": f"line {i:02d} " + "x" * 40})
        wait_for(
            lambda: any("line 39" in r["line"] for r in log_records(logs / "echo.log")),
            10,
            what="the last line",
        )
        files = sorted(p.name for p in logs.glob("echo.log*"))
        assert files == ["echo.log", "echo.log.1", "echo.log.2"]
        for name in files:
            assert (logs / name).stat().st_size <= 2048
        # The daemon's own log is there too, rotated by the same settings.
        assert "serving" in (logs / "zskilld.log").read_text()

        # zskill logs: the newest lines across the files, --err, --json.
        out = zskill(d.config, "logs", "echo", "-n", "4")
        lines = out.stdout.splitlines()
        assert len(lines) == 4 and all(" 2.0.0 " in ln for ln in lines), out.stdout
        assert lines[-1].endswith("| err line 39 " + "x" * 40)
        err = zskill(d.config, "logs", "echo", "--err", "-n", "3").stdout.splitlines()
        assert len(err) == 3 and all(" err | err " in ln for ln in err)
        raw = json.loads(zskill(d.config, "logs", "echo", "--json").stdout)  # one document
        assert {r["stream"] for r in raw} == {"out", "err"}


class Follower:
    """``zskill logs SKILL -f`` as a subprocess, its lines collected by a thread."""

    def __init__(self, config: Path, skill: str) -> None:
        self.proc = subprocess.Popen(
            [*ZSKILL, "logs", skill, "-f", "-n", "0", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C: ends a follow cleanly
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


def test_logs_follow_continues_through_an_upgrade(tmp: Path) -> None:
    v1 = variant(tmp, "v1", version="1.0.0", extra=TALKER)
    v2 = variant(tmp, "v2", version="2.0.0", extra=TALKER)
    # Small files, so that the follow also crosses a rotation.
    with running_daemon({"echo": example("echo", path=str(v1))}, {"log_max_bytes": 1024}) as d:
        d.wait_running("echo")
        c = d.client()
        follower = Follower(d.config, "echo")
        try:
            # The follower starts at the end: wait until it sees a line written after it.
            def seen(text: str) -> bool:
                c.call("echo", "shout", {"text": text})
                return follower.has(f"| out {text}")

            wait_for(lambda: seen("before"), 15, interval=0.3, what="the follower running")
            report = c.upgrade("echo", v2)
            assert report["new_version"] == "2.0.0"
            for i in range(6):
                c.call("echo", "shout", {"text": f"after {i}"})
            wait_for(lambda: follower.has("| err after 5"), 15, what="the new version's lines")
        finally:
            follower.stop()
        new = [ln for ln in follower.lines if "after" in ln]
        assert len(new) == 12 and all(" 2.0.0 " in ln for ln in new), follower.lines
        assert any(" 1.0.0 " in ln and "out before" in ln for ln in follower.lines)
        assert (d.run_dir / "logs" / "echo.log.1").exists()  # it did rotate meanwhile


# --- events -------------------------------------------------------------------------------


def test_events_survive_a_daemon_restart(tmp: Path) -> None:
    v2 = variant(tmp, "v2", version="2.0.0")
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        d.client().upgrade("echo", v2)
        before = d.client().events("echo", limit=1000)
        deployed = [e for e in before if e["type"] == "deployed" and e["data"]["op"] == "upgrade"]
        assert len(deployed) == 1
        d.stop()
        d.start()
        d.wait_running("echo")
        after = d.client().events(limit=1000)
        assert deployed[0] in after  # the same event: seq, time and data
        seqs = [e["seq"] for e in after]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        starts = [e for e in after if e["type"] == "daemon.start"]
        assert len(starts) == 2 and starts[1]["seq"] > deployed[0]["seq"]
        out = zskill(d.config, "events", "--skill", "echo", "-n", "1000")
        assert "deployed op=upgrade old_version=1.0.0 new_version=2.0.0" in out.stdout


# --- the dashboard --------------------------------------------------------------------------


def test_dashboard_once_renders_every_skill() -> None:
    skills = {"echo": example("echo"), "slow": example("slow")}
    with running_daemon(skills) as d:
        st = d.wait_running("echo", "slow")
        d.client().call("echo", "say", {"text": "x"})
        out = zskill(d.config, "dashboard", "--once")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("zskill dashboard ") and "● connected" in lines[0]
        header = lines[2].split()
        assert header[:6] == ["│", "name", "state", "version", "pid", "uptime"]
        for name in ("echo", "slow"):
            cells = next(ln.split() for ln in lines if f" {name} " in ln and "running" in ln)
            assert cells[cells.index(name) : cells.index(name) + 4] == [
                name, "running", "1.0.0", str(st[name]["pid"])
            ]  # fmt: skip
        assert any("started 1.0.0" in ln for ln in lines)


class Tmux:
    """A command in a detached tmux session on a private server (its own
    socket), so nothing of the user's tmux is touched."""

    def __init__(self, name: str, cols: int = 110, rows: int = 36) -> None:
        self.name = name
        self.base = ["tmux", "-L", name]
        self.size = (cols, rows)

    def start(self, command: list[str], cwd: Path) -> None:
        cols, rows = self.size
        cmd = " ".join(_quote(a) for a in command)
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", self.name, "-x", str(cols), "-y", str(rows),
             "-c", str(cwd), cmd],
            check=True, timeout=10,
        )  # fmt: skip

    def screen(self) -> str:
        out = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", self.name],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", self.name, *keys], check=True, timeout=10)

    def alive(self) -> bool:
        out = subprocess.run([*self.base, "has-session", "-t", self.name], capture_output=True,
                             timeout=10)  # fmt: skip
        return out.returncode == 0

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_dashboard_live_in_a_terminal(tmp: Path) -> None:
    v2 = variant(tmp, "v2", version="2.0.0")
    skills = {"echo": example("echo"), "slow": example("slow")}
    with running_daemon(skills) as d:
        d.wait_running("echo", "slow")
        c = d.client()
        term = Tmux(f"zskill-test-{os.getpid()}")
        term.start([*ZSKILL, "dashboard", "--config", str(d.config)], d.root)
        try:
            first = wait_for(lambda: (lambda s: s if "● connected" in s else None)(term.screen()),
                             20, interval=0.1, what="the dashboard connected")  # fmt: skip
            assert "▸ echo running 1.0.0" in first, first
            assert "  slow running 1.0.0" in first

            # Live: a call and an upgrade show up without a key pressed.
            for _ in range(5):
                c.call("echo", "say", {"text": "x"})
            c.upgrade("echo", v2)
            screen = wait_for(
                lambda: (lambda s: s if "▲ upgraded 1.0.0 -> 2.0.0" in s else None)(term.screen()),
                10, interval=0.1, what="the upgrade in the events pane",
            )  # fmt: skip
            wait_for(lambda: "▸ echo running 2.0.0" in term.screen(), 10, interval=0.1,
                     what="echo's new version in its row")  # fmt: skip
            assert "│ " in screen and "logs: echo" in screen

            # Keys: j moves the selection, and the log pane follows it.
            term.keys("j")
            wait_for(lambda: "▸ slow" in term.screen() and "logs: slow" in term.screen(), 5,
                     interval=0.1, what="slow selected")  # fmt: skip

            # The daemon goes away, then comes back: disconnected, then connected again.
            d.stop()
            wait_for(lambda: "○ disconnected" in term.screen(), 15, interval=0.1,
                     what="disconnected shown")  # fmt: skip
            d.start()
            pid = d.client().ping()["pid"]
            wait_for(lambda: f"● connected (daemon {pid})" in term.screen(), 20, interval=0.1,
                     what="reconnected to the new daemon")  # fmt: skip
            wait_for(lambda: "daemon.start" in term.screen() or "started 1.0.0" in term.screen(),
                     10, interval=0.1, what="the new daemon's events")  # fmt: skip

            term.keys("q")
            wait_for(lambda: not term.alive(), 10, interval=0.1, what="the dashboard to quit")
        finally:
            term.kill()


# --- metrics ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(port: int, name: str, **labels: str) -> float | None:
    return scrape(port).get((name, frozenset(labels.items())))


def test_metrics_endpoint_counts_what_happened(tmp: Path) -> None:
    port = free_port()
    v2 = variant(tmp, "v2", version="2.0.0")
    skills = {"echo": example("echo"), "slow": example("slow", concurrency=1)}
    with running_daemon(skills, {"metrics_port": port}) as d:
        st = d.wait_running("echo", "slow")
        c = d.client()
        for _ in range(5):
            c.call("echo", "say", {"text": "x"})
        for _ in range(2):
            with contextlib.suppress(Exception):
                c.call("echo", "fail", {"message": "no"})
        c.upgrade("echo", v2)
        for _ in range(3):
            c.call("echo", "say", {"text": "y"})
        with contextlib.suppress(Exception):
            c.upgrade("echo", EXAMPLES / "broken" / "health_false")

        v1 = {"skill": "echo", "version": "1.0.0"}
        v2l = {"skill": "echo", "version": "2.0.0"}
        wait_for(
            lambda: metric(port, "zskill_calls_total", **v2l) == 3, 10, what="3 calls on 2.0.0"
        )
        assert metric(port, "zskill_calls_total", **v1) == 7
        assert metric(port, "zskill_call_errors_total", **v1) == 2
        assert metric(port, "zskill_call_errors_total", **v2l) == 0
        assert metric(port, "zskill_call_duration_seconds_count", **v1) == 7
        assert metric(port, "zskill_call_duration_seconds_bucket", le="+Inf", **v1) == 7
        assert (metric(port, "zskill_call_duration_seconds_sum", **v1) or 0) > 0
        up = {"skill": "echo", "op": "upgrade"}
        wait_for(
            lambda: metric(port, "zskill_upgrades_total", outcome="rolled_back", **up) == 1,
            10,
            what="the rejected upgrade counted",
        )
        assert metric(port, "zskill_upgrades_total", outcome="deployed", **up) == 1
        assert metric(port, "zskill_skill_info", **v2l) == 1
        assert metric(port, "zskill_skill_up", skill="echo") == 1

        # in-flight and queued while slow calls run (concurrency 1: 1 runs, 2 wait).
        threads = [
            threading.Thread(target=c.call, args=("slow", "sleep", {"seconds": 1.5}))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        slow = {"skill": "slow", "version": "1.0.0"}
        wait_for(
            lambda: (
                metric(port, "zskill_calls_in_flight", **slow) == 1
                and metric(port, "zskill_calls_queued", skill="slow") == 2
            ),
            10,
            what="1 in flight, 2 queued",
        )
        for t in threads:
            t.join(30)

        # restarts after a kill.
        os.kill(st["slow"]["pid"], signal.SIGKILL)
        wait_for(lambda: metric(port, "zskill_restarts_total", skill="slow") == 1, 20,
                 what="the restart counted")  # fmt: skip
        d.wait_running("slow")
        assert metric(port, "zskill_calls_total", **slow) == 3
        assert (metric(port, "process_cpu_seconds_total") or 0) > 0  # the daemon's own


def test_up_metrics_port_flag(tmp: Path) -> None:
    port = free_port()
    config = tmp / "zskill.toml"
    config.write_text(
        f'[skills.echo]\npath = "{EXAMPLES / "echo"}"\ncommand = ["python", "main.py"]\n'
    )
    up = zskill(config, "up", "--detach", "--metrics-port", str(port))
    pid = None
    try:
        assert up.returncode == 0, up.stderr
        pid = int(up.stdout.split("pid ")[1].split(",")[0])
        wait_for(lambda: metric(port, "zskill_skill_up", skill="echo") == 1, 20, what="echo up")
    finally:
        down = zskill(config, "down")
        if pid is not None and psutil.pid_exists(pid):
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(pid).children(recursive=True):
                    p.kill()
                psutil.Process(pid).kill()
    assert down.returncode == 0, down.stderr
    with pytest.raises(OSError):
        scrape(port)  # the server went with the daemon


def test_metrics_port_taken_is_a_clear_error(tmp: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = tmp / "zskill.toml"
        config.write_text(f"[daemon]\nmetrics_port = {port}\n")
        out = zskill(config, "up")
    assert out.returncode == 2, out.stderr
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in out.stderr
    # It cleaned up after itself: no pid file, no socket left for a client to find.
    assert not (tmp / ".zskill" / "zskilld.pid").exists()
    assert not (tmp / ".zskill" / "control.sock").exists()
