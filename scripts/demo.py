#!/usr/bin/env python3
"""zskill's main job, end to end, on this machine.

1. write a zskill.toml with three example skills and start the daemon;
2. start the core agent loop: a pydantic-ai agent (scripted model, no
   network) running a durable task on the skills (scripts/demo_agent.py);
3. upgrade `echo` live, mid-task, to a release that adds a tool: the agent
   sees the new tool at its next step and calls it;
4. SIGKILL the agent's loop process mid-task;
5. try a broken release (its health check fails): it is rolled back and the
   running version keeps serving;
6. resume the task: it goes on from its last completed step, repeating no
   tool call, and finishes; print its trajectory;
7. stop the daemon, and check that no process is left behind.

Exits non-zero if a tool call failed or any step did not do what it should.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


def start_agent(config: Path, progress: Path) -> subprocess.Popen[bytes]:
    """The core loop: ``zskill agent run`` in a process of its own (killable)."""
    cmd = [sys.executable, "-m", "orchestrator", "agent", "run", "demo_agent:agent"]
    cmd += ["survey the skills", "--task-id", "demo", "--config", str(config)]
    console.print(f"[bold cyan]$ zskill {' '.join(cmd[3:-2])}[/]  (in the background)")
    env = {**os.environ, "ZSKILL_CONFIG": str(config), "DEMO_PROGRESS": str(progress)}
    return subprocess.Popen(cmd, cwd=REPO / "scripts", env=env, stdout=subprocess.DEVNULL)


def wait_steps(progress: Path, n: int, loop: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """Wait until the agent has made ``n`` model requests; how many it made."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        made = len(progress.read_text().splitlines()) if progress.exists() else 0
        if made >= n:
            return made
        if loop.poll() is not None:
            raise SystemExit(f"the agent loop exited early (code {loop.returncode})")
        time.sleep(0.05)
    raise SystemExit(f"the agent made fewer than {n} steps in {timeout_s} s")


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


def check_trajectory(config: Path) -> bool:
    """The task finished, every tool call succeeded, the upgrade shows in it."""
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "task", "show", "demo", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    task = json.loads(out.stdout)
    tools = [s for s in task["trajectory"] if s["kind"] == "tool"]
    echo = {s["skill_version"] for s in tools if s["name"].startswith("echo__")}
    table = Table(title="the agent's task")
    for col in ("state", "tool calls", "failed", "echo versions served", "shout called"):
        table.add_column(col)
    failed = [s for s in tools if s["outcome"] != "ok"]
    shout = any(s["name"] == "echo__shout" for s in tools)
    table.add_row(
        task["state"], str(len(tools)), str(len(failed)), ", ".join(sorted(echo)), str(shout)
    )
    console.print(table)
    good = task["state"] == "done" and not failed and echo == {"1.0.0", "2.0.0"} and shout
    if not good:
        console.print("[red]the task did not do what it should")
    return good


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
    loop: subprocess.Popen[bytes] | None = None
    loop_pid = None
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

        progress = root / "progress.txt"
        console.print(
            "\n[bold]the core loop[/]: an agent (pydantic-ai, scripted model) on the skills"
        )
        loop = start_agent(config, progress)
        loop_pid = loop.pid
        wait_steps(progress, 5, loop)

        console.print("\n[bold]live upgrade[/] of echo, mid-task, to a release that adds a tool:")
        zskill("upgrade", "echo", "--from", str(new_release(root)), config=config)
        made = wait_steps(progress, len(progress.read_text().splitlines()) + 4, loop)

        console.print(
            f"\n[bold]SIGKILL[/] of the agent loop (pid {loop.pid}) mid-task, at step {made}:"
        )
        loop.send_signal(signal.SIGKILL)
        loop.wait()
        zskill("tasks", config=config)

        console.print("\n[bold]a broken release[/] (health check fails) must be rolled back:")
        code = zskill(
            "upgrade",
            "echo",
            "--from",
            str(EXAMPLES / "broken" / "health_false"),
            # It also lacks the tool the last release added: let the health
            # check, not the breaking-change gate, be what refuses it.
            "--allow-breaking",
            config=config,
            check=False,
        )
        if code == 0:
            console.print("[red]the broken release was accepted[/]")
            ok = False

        console.print("\n[bold]resume[/]: the task goes on from its last completed step")
        env_agent = {**os.environ, "ZSKILL_CONFIG": str(config), "DEMO_PROGRESS": str(progress)}
        resumed = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "task",
                "resume",
                "demo",
                "--config",
                str(config),
            ],
            cwd=REPO / "scripts",
            env=env_agent,
            check=False,
        )
        if resumed.returncode != 0:
            console.print(f"[red]resume failed (exit {resumed.returncode})")
            ok = False
        zskill("task", "show", "demo", config=config)
        ok = check_trajectory(config) and ok
        version = next(s for s in client.list() if s["name"] == "echo")["version"]
        if version != "2.0.0":
            console.print(f"[red]echo serves {version}, expected 2.0.0")
            ok = False
        zskill("events", "--skill", "echo", "-n", "12", config=config)
        client.close()
    finally:
        if loop is not None and loop.poll() is None:
            loop.kill()
            loop.wait()
        zskill("down", config=config, check=False)
        if loop_pid is not None and not gone(loop_pid):
            console.print(f"[red]agent loop {loop_pid} still running")
            ok = False
        if daemon_pid is not None and not gone(daemon_pid):
            console.print(f"[red]daemon {daemon_pid} still running")
            ok = False
        shutil.rmtree(root, ignore_errors=True)
    console.rule("[bold green]demo passed: no call failed" if ok else "[bold red]demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
