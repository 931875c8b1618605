"""Helpers for integration tests: real daemons on short run dirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "skills" / "examples"

T = TypeVar("T")


def wait_for(
    cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may raise while things settle
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or cond}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


ZSKILL = [sys.executable, "-m", "orchestrator"]
"""The CLI, run as a user runs it (with the environment, so PYTHONPATH holds)."""


def zskill(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``zskill ARGS --config CONFIG`` from the config's directory."""
    return subprocess.run(
        [*ZSKILL, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def short_dir(prefix: str = "zs") -> Path:
    """A temp dir short enough for ipc:// paths (pytest's tmp_path often is not)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def write_config(
    path: Path, skills: dict[str, dict[str, Any]], daemon: dict[str, Any] | None = None
) -> None:
    lines = ["[daemon]"]
    for k, v in {"run_dir": ".zskill", **(daemon or {})}.items():
        lines.append(f"{k} = {toml_value(v)}")
    for name, table in skills.items():
        lines.append(f"\n[skills.{name}]")
        for k, v in table.items():
            lines.append(f"{k} = {toml_value(v)}")
    path.write_text("\n".join(lines) + "\n")


def example(name: str, **overrides: Any) -> dict[str, Any]:
    """A skill table running an example skill."""
    table: dict[str, Any] = {
        "path": str(EXAMPLES / name),
        "command": ["python", "main.py"],
        "start_timeout_s": 15,
        "health_timeout_s": 5,
        "grace_s": 5,
    }
    table.update(overrides)
    return table


class Daemon:
    """A real zskill daemon started with `zskill up` as a subprocess."""

    def __init__(
        self,
        root: Path,
        skills: dict[str, dict[str, Any]],
        daemon: dict[str, Any] | None = None,
        up_args: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.up_args = up_args  # more options of `zskill up` (--watch)
        self.config = root / "zskill.toml"
        write_config(self.config, skills, daemon)
        self.run_dir = root / ".zskill"
        self.proc: subprocess.Popen[bytes] | None = None
        self.known_pids: set[int] = set()
        self._clients: list[Any] = []

    def start(self, timeout: float = 20.0) -> Daemon:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.out = open(self.root / "daemon.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "up",
                "--config",
                str(self.config),
                *self.up_args,
            ],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            env=env,
        )
        self.known_pids.add(self.proc.pid)
        c = self.client()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.output()}")
            c.ping(timeout=0.5)
            return True

        wait_for(up, timeout, what="the daemon to answer ping")
        return self

    def output(self) -> str:
        try:
            return (self.root / "daemon.out").read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(self, **kw: Any) -> Any:
        from orchestrator import Client

        c = Client(self.config, **kw)
        self._clients.append(c)
        return c

    def status(self, skill: str) -> dict[str, Any]:
        c = self.client()
        try:
            return next(s for s in c.list() if s["name"] == skill)
        finally:
            c.close()

    def wait_running(self, *skills: str, timeout: float = 20.0) -> dict[str, dict[str, Any]]:
        c = self.client()

        def check() -> dict[str, dict[str, Any]] | None:
            st = {s["name"]: s for s in c.list()}
            if all(st[s]["state"] == "running" for s in skills):
                return st
            return None

        try:
            st = wait_for(check, timeout, what=f"{skills} running")
        finally:
            c.close()
        for s in st.values():
            for i in s["instances"]:
                self.known_pids.add(i["pid"])
        return st

    def skill_pids(self) -> set[int]:
        if self.proc is None:
            return set()
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            return set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the daemon and make sure nothing it started survives."""
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        if self.proc is None:
            return
        self.known_pids |= self.skill_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.known_pids:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        self.out.close()
        self.proc = None


@contextlib.contextmanager
def running_daemon(
    skills: dict[str, dict[str, Any]],
    daemon: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    up_args: tuple[str, ...] = (),
) -> Iterator[Daemon]:
    """A daemon on ``root`` (a new short dir by default; removed after)."""
    root = short_dir() if root is None else root
    d = Daemon(root, skills, daemon, up_args)
    try:
        d.start()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def variant(
    dest_parent: Path,
    name: str,
    *,
    base: str = "echo",
    version: str = "2.0.0",
    extra: str = "",
    replace: dict[str, str] | None = None,
) -> Path:
    """A copy of an example skill with its version set (and code added before
    ``if __name__``): what a new release of it looks like."""
    dest = dest_parent / name
    shutil.copytree(EXAMPLES / base, dest, ignore=shutil.ignore_patterns("__pycache__"))
    main = dest / "main.py"
    code = main.read_text()
    env_var = f"{base.upper()}_VERSION"
    code = code.replace(f'os.environ.get("{env_var}", "1.0.0")', repr(version))
    for old, new in (replace or {}).items():
        assert old in code, old
        code = code.replace(old, new)
    if extra:
        code = code.replace('if __name__ == "__main__":', extra + '\n\nif __name__ == "__main__":')
    main.write_text(code)
    return dest


class Load:
    """Callers calling a tool in a loop on one shared client until stopped:
    counts calls, failures and the versions that served them."""

    def __init__(
        self, client: Any, skill: str, tool: str, args: dict[str, Any], callers: int = 4
    ) -> None:
        import threading

        self.client, self.skill, self.tool, self.args = client, skill, tool, args
        self.calls = 0
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(callers)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                r = self.client.call_detailed(self.skill, self.tool, self.args, timeout=30)
            except Exception as e:
                with self._lock:
                    self.calls += 1
                    self.failures.append(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            with self._lock:
                self.calls += 1
                self.latencies.append(dt)
                self.versions[r.version] = self.versions.get(r.version, 0) + 1

    def wait_calls(self, n: int, timeout: float = 20.0) -> None:
        start = self.calls
        wait_for(lambda: self.calls >= start + n, timeout, what=f"{n} more calls")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


class InBackground:
    """Calls made at once from threads: ``results[key]`` is each one's
    CallResult, or the exception it raised; ``finished_at[key]`` when (monotonic)."""

    def __init__(
        self, client: Any, calls: dict[str, tuple[str, str, dict[str, Any]]], timeout: float = 20
    ) -> None:
        import threading

        self.results: dict[str, Any] = {}
        self.finished_at: dict[str, float] = {}

        def run(key: str, skill: str, tool: str, args: dict[str, Any]) -> None:
            try:
                self.results[key] = client.call_detailed(skill, tool, args, timeout=timeout)
            except Exception as exc:
                self.results[key] = exc
            self.finished_at[key] = time.monotonic()

        self._threads = [
            threading.Thread(target=run, args=(key, *call)) for key, call in calls.items()
        ]
        for t in self._threads:
            t.start()

    def join(self, timeout: float = 30) -> dict[str, Any]:
        for t in self._threads:
            t.join(timeout)
        return self.results
