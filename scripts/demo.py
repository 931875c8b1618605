#!/usr/bin/env python3
"""zskill's main job, end to end, on this machine.

1. write a zskill.toml with three example skills and start the daemon;
2. run a core agent loop: callers calling every skill without pause;
3. upgrade `echo` live to a new release that adds a tool, while they call;
4. try a broken release (its health check fails): it is rolled back and the
   running version keeps serving;
5. report the calls made and failed, stop the daemon, and check that no
   process is left behind.

Exits non-zero if any call failed or any step did not do what it should.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "skills" / "examples"
console = Console()


def zskill(*args: str, config: Path, check: bool = True) -> int:
    """Run the real CLI, its output shown as it comes."""
    console.print(f"[bold cyan]$ zskill {' '.join(args)}[/]")
    cmd = [sys.executable, "-m", "orchestrator", *args, "--config", str(config)]
    code = subprocess.run(cmd, check=False).returncode
    if check and code != 0:
        raise SystemExit(f"`zskill {' '.join(args)}` failed with exit code {code}")
    return code


class CoreLoop:
    """Stands in for an agent's core loop: callers that never stop calling."""

    WORK = (
        ("echo", "say", {"text": "hello", "times": 2}),
        ("clock", "now", {}),
        ("slow", "work", {"ms": 2}),
    )

    def __init__(self, client: object, callers: int = 3) -> None:
        self.client = client
        self.calls = 0
        self.failed: list[str] = []
        self.versions: dict[str, set[str]] = {}
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(callers)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            skill, tool, args = self.WORK[i % len(self.WORK)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = self.client.call_detailed(skill, tool, args, timeout=30)  # type: ignore[attr-defined]
            except Exception as exc:
                with self._lock:
                    self.calls += 1
                    self.failed.append(f"{skill}.{tool}: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.calls += 1
                self.latencies.append(time.perf_counter() - t0)
                self.versions.setdefault(skill, set()).add(r.version)


def gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by its parent counts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def new_release(parent: Path) -> Path:
    """echo 2.0.0: the same skill with one more tool."""
    dest = parent / "echo-2.0.0"
    shutil.copytree(EXAMPLES / "echo", dest, ignore=shutil.ignore_patterns("__pycache__"))
    main = dest / "main.py"
    code = main.read_text().replace('os.environ.get("ECHO_VERSION", "1.0.0")', '"2.0.0"')
    shout = (
        "@skill.tool()\ndef shout(text: str) -> str:\n"
        '    """Upper-case text."""\n    return text.upper()\n\n\n'
    )
    main.write_text(
        code.replace('if __name__ == "__main__":', shout + 'if __name__ == "__main__":')
    )
    return dest


def main() -> int:
    from orchestrator import Client

    root = Path(tempfile.mkdtemp(prefix="zdemo", dir="/tmp"))
    config = root / "zskill.toml"
    config.write_text(
        '[daemon]\nrun_dir = ".zskill"\n\n'
        + "".join(
            f'[skills.{name}]\npath = "{EXAMPLES / name}"\ncommand = ["python", "main.py"]\n'
            f"grace_s = 10\n\n"
            for name in ("echo", "clock", "slow")
        )
    )
    console.rule("[bold]zskill demo")
    console.print(f"config: {config}")
    ok = True
    daemon_pid = None
    try:
        zskill("up", "--detach", config=config)
        client = Client(config)
        daemon_pid = client.ping()["pid"]
        deadline = time.monotonic() + 30
        while not all(s["state"] == "running" for s in client.list()):
            if time.monotonic() > deadline:
                raise SystemExit("skills did not start")
            time.sleep(0.05)
        zskill("list", config=config)

        loop = CoreLoop(client)
        loop.start()
        console.print("\n[bold]core loop[/] calling echo, clock and slow without pause...")
        time.sleep(1.0)  # let the loop build up a baseline before upgrading

        console.print("\n[bold]live upgrade[/] of echo to a release that adds a tool:")
        zskill("upgrade", "echo", "--from", str(new_release(root)), config=config)
        console.print(f"echo.shout -> {client.call('echo', 'shout', {'text': 'upgraded'})!r}")

        console.print("\n[bold]a broken release[/] (health check fails) must be rolled back:")
        code = zskill(
            "upgrade",
            "echo",
            "--from",
            str(EXAMPLES / "broken" / "health_false"),
            config=config,
            check=False,
        )
        if code == 0:
            console.print("[red]the broken release was accepted[/]")
            ok = False
        time.sleep(0.5)
        loop.stop()

        lat = sorted(loop.latencies)
        table = Table(title="core loop during the upgrades")
        for col in ("calls", "failed", "p50 ms", "p99 ms", "echo versions served"):
            table.add_column(col)
        table.add_row(
            str(loop.calls),
            str(len(loop.failed)),
            f"{lat[len(lat) // 2] * 1000:.2f}" if lat else "-",
            f"{lat[int(len(lat) * 0.99)] * 1000:.2f}" if lat else "-",
            ", ".join(sorted(loop.versions.get("echo", set()))),
        )
        console.print(table)
        for f in loop.failed[:10]:
            console.print(f"[red]failed: {f}")
        if loop.failed or loop.versions.get("echo") != {"1.0.0", "2.0.0"}:
            ok = False
        version = next(s for s in client.list() if s["name"] == "echo")["version"]
        if version != "2.0.0":
            console.print(f"[red]echo serves {version}, expected 2.0.0")
            ok = False
        zskill("events", "--skill", "echo", "-n", "12", config=config)
        client.close()
    finally:
        zskill("down", config=config, check=False)
        if daemon_pid is not None and not gone(daemon_pid):
            console.print(f"[red]daemon {daemon_pid} still running")
            ok = False
        shutil.rmtree(root, ignore_errors=True)
    console.rule("[bold green]demo passed: no call failed" if ok else "[bold red]demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
