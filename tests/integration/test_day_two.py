"""Day-two operations against real daemons: what a refused operation and a
caller's mistake leave in the counters, ``zskill tools``, and the errors
that name what there is."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import EXAMPLES, example, running_daemon, wait_for

from orchestrator import InvalidArguments, RemoteError, ToolNotFound, UpgradeInProgress

ZSKILL = [sys.executable, "-m", "orchestrator"]


def zskill(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZSKILL, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def test_counters_tell_the_skills_failures_from_the_callers_and_refusals() -> None:
    with running_daemon({"echo": example("echo", health_timeout_s=3)}) as d:
        d.wait_running("echo")
        c = d.client()
        with pytest.raises(ToolNotFound) as missing:
            c.call("echo", "sya", {"text": "hi"})
        # The error names the tools there are.
        assert "its tools: big, env, fail, noop, ping, say, unencodable" in str(missing.value)
        with pytest.raises(InvalidArguments):
            c.call("echo", "say", {"txt": "hi"})
        with pytest.raises(RemoteError):
            c.call("echo", "fail", {"message": "boom"})
        assert c.call("echo", "say", {"text": "hi"}) == "hi"
        st = d.status("echo")
        # Four calls, one failure of the skill: the caller's two mistakes are not its errors.
        assert (st["errors"], st["error_rate"]) == (1, 0.25), st

        # A restart refused (an upgrade runs) changes no counter.
        hangs = str(EXAMPLES / "broken" / "health_hangs")
        upgrade: dict[str, Any] = {}

        def run_upgrade() -> None:
            try:
                upgrade["report"] = d.client().upgrade("echo", from_dir=hangs)
            except Exception as exc:
                upgrade["error"] = exc

        t = threading.Thread(target=run_upgrade)
        t.start()
        wait_for(lambda: d.status("echo")["state"] == "upgrading", 10, what="the upgrade")
        with pytest.raises(UpgradeInProgress):
            c.restart("echo")
        assert d.status("echo")["restarts"] == 0
        t.join(30)
        assert "error" in upgrade  # its health check hung: rolled back
        assert d.status("echo")["restarts"] == 0


def test_zskill_tools_prints_each_tools_description_and_arguments() -> None:
    with running_daemon({"echo": example("echo"), "clock": example("clock")}) as d:
        d.wait_running("echo", "clock")
        out = zskill(d.config, "tools", "echo")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "echo 1.0.0"
        say = lines.index("  say          Repeat text.")
        assert lines[say + 1].split()[:3] == ["text", "string", "required"]
        assert lines[say + 1].endswith("required  the text to repeat.")
        assert lines[say + 2].split()[:4] == ["times", "integer", "=", "1"]
        assert any(ln.startswith("  ping ") and "(idempotent)" in ln for ln in lines)

        every = json.loads(zskill(d.config, "tools", "--json").stdout)
        assert set(every) == {"echo", "clock"}
        spec = next(t for t in every["echo"] if t["name"] == "say")
        assert spec["input_schema"]["required"] == ["text"]
        assert spec["description"] == "Repeat text."
