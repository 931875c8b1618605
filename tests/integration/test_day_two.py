"""Day-two operations against real daemons: what a refused operation and a
caller's mistake leave in the counters, ``zskill tools``, and the errors
that name what there is."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

import psutil
import pytest
from helpers import (
    EXAMPLES,
    ZSKILL,
    example,
    running_daemon,
    short_dir,
    variant,
    wait_for,
    write_config,
    zskill,
)

from orchestrator import InvalidArguments, RemoteError, ToolNotFound, UpgradeInProgress


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


SYNTAX_ERROR = 'from skills import Skill\n\nskill = Skill("syn", version="1")\n\ndef f(:\n'


def test_up_detach_says_what_could_not_start_and_why() -> None:
    """Issue 15: a typo in a path and a syntax error: ``up --detach`` said
    "daemon started" and exited 0, a call hung until its deadline, and a
    failed upgrade hid its traceback in the logs."""
    root = short_dir("zu")
    (root / "syn").mkdir()
    (root / "syn" / "main.py").write_text(SYNTAX_ERROR)
    broken = root / "echo-2"  # a release of echo that cannot import
    shutil.copytree(EXAMPLES / "echo", broken, ignore=shutil.ignore_patterns("__pycache__"))
    main = broken / "main.py"
    main.write_text(main.read_text().replace("import os\n", "import os\nimport not_a_module\n"))
    config = root / "zskill.toml"
    write_config(
        config,
        {
            "echo": example("echo"),
            "bad": example("echo", path=str(root / "no-such-dir")),
            "syn": {**example("echo", path="syn"), "backoff_s": 5},
        },
    )
    pid = None
    try:
        up = zskill(config, "up", "--detach", timeout=60)
        pid = int(up.stdout.split("pid ")[1].split(",")[0])
        assert up.returncode == 1, up.stdout + up.stderr
        out = up.stdout.splitlines()
        assert re.match(r"echo +running +1\.0\.0 \(pid \d+\)$", out[1]), out
        assert re.match(r"bad +backoff +start failed: cannot start .*no-such-dir", out[2]), out
        assert "No such file or directory" in out[2]
        assert re.match(r"syn +backoff +start failed: .* exited with code 1 before serving", out[3])
        assert out[3].endswith("(SyntaxError: invalid syntax)")
        assert "| SyntaxError: invalid syntax" in out[-1] and "|     def f(:" in up.stdout
        assert "2 of 3 skills could not start (bad, syn)" in up.stderr
        # The daemon keeps running the others.
        assert zskill(config, "call", "echo", "say", "--json", '{"text": "hi"}').stdout == "hi\n"

        # A call to a skill backing off fails at once, with the reason.
        from orchestrator import Client, SkillUnavailable

        with Client(config) as c:
            t0 = time.monotonic()
            with pytest.raises(SkillUnavailable) as refused:
                c.call("syn", "say", {"text": "hi"}, timeout=30)
            assert time.monotonic() - t0 < 1.0
        assert "cannot start" in str(refused.value) and "SyntaxError" in str(refused.value)

        # A failed upgrade shows the new process's traceback, in text and in --json.
        failed = zskill(config, "upgrade", "echo", "--from", str(broken))
        assert failed.returncode == 1
        assert "upgrade failed at hello: the new process exited with code 1" in failed.stderr
        assert "  | ModuleNotFoundError: No module named 'not_a_module'" in failed.stderr
        as_json = json.loads(
            zskill(config, "upgrade", "echo", "--from", str(broken), "--json").stdout
        )
        tail = as_json["error"]["details"]["stderr_tail"]
        assert tail[0] == "Traceback (most recent call last):"
        assert tail[-1] == "ModuleNotFoundError: No module named 'not_a_module'"
        assert as_json["serving"] == "1.0.0 still serving"
    finally:
        zskill(config, "down")
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


TALKER = """
import sys as _sys


@skill.tool()
def shout(text: str) -> str:
    \"\"\"Print text on stdout and again on stderr.\"\"\"
    print(f"out {text}", flush=True)
    print(f"err {text}", file=_sys.stderr, flush=True)
    return text
"""


def test_foreground_up_shows_events_and_output_and_says_what_ctrl_c_stopped() -> None:
    root = short_dir("zf")
    try:
        talker = variant(root, "talker", version="2.0.0", extra=TALKER)
        config = root / "zskill.toml"
        write_config(config, {"echo": example("echo", path=str(talker))})
        for quiet in (False, True):
            out_path, err_path = root / f"out-{quiet}", root / f"err-{quiet}"
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                argv = [*ZSKILL, "up", "--config", str(config), *(["--quiet"] if quiet else [])]
                proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=root)
            try:
                from orchestrator import Client

                with Client(config) as c:
                    wait_for(lambda: c.call("echo", "shout", {"text": "hi"}) == "hi", 30)
                    pid = next(s["pid"] for s in c.list() if s["name"] == "echo")
                if not quiet:
                    wait_for(
                        lambda p=out_path: "err hi" in p.read_text(),  # type: ignore[misc]
                        10,
                        what="the output",
                    )
                proc.send_signal(signal.SIGINT)  # Ctrl-C
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            shown = out_path.read_text().splitlines()
            said = err_path.read_text()
            if quiet:
                assert shown == [] and "zskill daemon stopped" in said
                continue
            assert any(
                re.fullmatch(r"zskilld +● serving .*zskill\.toml \(pid \d+\)", s) for s in shown
            )
            assert f"echo 2.0.0  ● ready (pid {pid})" in shown, shown
            assert "echo 2.0.0  | out hi" in shown and "echo 2.0.0  | err hi" in shown
            assert "zskilld     ● shutting down: every skill drains, then stops" in shown
            assert "echo 2.0.0  ● exited with code 0" in shown
            assert f"zskill daemon stopped; stopped echo 2.0.0 (pid {pid})" in said
            assert not psutil.pid_exists(pid)
    finally:
        shutil.rmtree(root, ignore_errors=True)
