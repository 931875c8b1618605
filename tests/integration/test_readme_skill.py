"""A skill written only from the README, in a fresh directory outside the
repo, runs under the daemon and answers `zskill call`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from helpers import REPO, Daemon, short_dir


def test_readme_skill_runs_from_a_fresh_directory() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Writing a skill", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    root = short_dir()
    try:
        skill_dir = root / "myskill"
        skill_dir.mkdir()
        (skill_dir / "main.py").write_text(code.group(1))
        d = Daemon(
            root, {"echo": {"path": "myskill", "command": ["python", "main.py"], "grace_s": 5}}
        )
        d.start()
        try:
            d.wait_running("echo")
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    "call",
                    "echo",
                    "say",
                    "--json",
                    '{"text": "hello", "times": 2}',
                    "--config",
                    str(d.config),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=root,
            )
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == "hello hello"
        finally:
            d.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
