"""What the benchmark and soak scripts share: a real daemon in a short temp
dir, started with `zskill up`, waited for, and stopped (with every process
it started) at the end."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "skills" / "examples"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def skill_table(name: str, path: Path | None = None, /, **keys: Any) -> str:
    """A ``[skills.NAME]`` table running an example skill (or ``path``)."""
    lines = [
        f"[skills.{name}]",
        f'path = "{path or EXAMPLES / name}"',
        'command = ["python", "main.py"]',
    ]
    for key, value in keys.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n\n"


def release(
    parent: Path, base: str, version: str, extra: str = "", replace: dict[str, str] | None = None
) -> Path:
    """A copy of an example skill with another version (code added or replaced)."""
    dest = parent / f"{base}-{version}"
    shutil.copytree(EXAMPLES / base, dest, ignore=shutil.ignore_patterns("__pycache__"))
    main = dest / "main.py"
    code = main.read_text()
    code = code.replace(f'os.environ.get("{base.upper()}_VERSION", "1.0.0")', repr(version))
    for old, new in (replace or {}).items():
        if old not in code:
            raise ValueError(f"{base}/main.py has no {old!r}")
        code = code.replace(old, new)
    marker = 'if __name__ == "__main__":'
    main.write_text(code.replace(marker, extra + marker) if extra else code)
    return dest


class LocalDaemon:
    """``with LocalDaemon(config_text) as d:`` -- ``d.client``, ``d.root``."""

    def __init__(
        self, config_text: str, *, prefix: str = "zb", start_timeout_s: float = 60
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.config = self.root / "zskill.toml"
        self.config.write_text(config_text)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    def __enter__(self) -> LocalDaemon:
        from orchestrator import Client

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "up", "--quiet", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
        )
        self.client = Client(self.config)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                states = [s["state"] for s in self.client.list()]
                if states and all(s == "running" for s in states):
                    return self
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise SystemExit("the zskill daemon did not start its skills")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                tree = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            # The daemon stops its skills; any it left (it was killed, or a
            # skill was SIGSTOPped) go now, each by its own pid and start time.
            for p in psutil.wait_procs(tree, timeout=5)[1]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        shutil.rmtree(self.root, ignore_errors=True)
