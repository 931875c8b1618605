#!/usr/bin/env python3
"""zskill next to the tools a user would pick instead: one workload, one run.

Every peer serves the same tool (5 ms, answers its version) to 4 closed-loop
callers. After ``--warm-s`` the tool is upgraded (v1 -> v2); after as long
again a broken release (v3, exits at start) is deployed; the run ends as long
after that. Peers:

  zskill          ``zskill upgrade --from`` for both; zskill rolls the broken
                  one back by itself.
  circus reload   an HTTP worker behind a circus-owned socket (connections
                  wait in its backlog while no worker accepts); the code is
                  switched and the watcher reloaded (graceful: new process
                  first).
  circus restart  the same, restarted (stop, then start).
  mcp stdio       an MCP server (the official SDK's MCPServer) over stdio,
                  restarted by its host on the new code.

A peer without automatic rollback has an operator who reverts a broken
release as soon as a probe call fails (``PROBE_S``): as fast as a watching
script could. Per peer: calls, failed calls, p50 and max latency, the time
from the upgrade to the first call the new version answered, and the longest
time without a successful call (the outage) once the broken release went out.

    .venv/bin/python scripts/bench_peers.py [--warm-s 3]

The peers come from the ``bench`` extra (circus); never a runtime dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import LocalDaemon, skill_table

CALLERS = 4
WORK_S = 0.005
CALL_TIMEOUT_S = 10.0
PROBE_S = 2.0

ZSKILL_SKILL = '''
import time
from skills import Skill
skill = Skill("work", version="{version}")
{broken}
@skill.tool()
def work() -> str:
    """Work 5 ms, answer the version."""
    time.sleep(0.005)
    return "{version}"

if __name__ == "__main__":
    skill.run()
'''

HTTP_WORKER = """
import signal, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
{broken}
class Work(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        time.sleep(0.005)
        body = b"{version}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
sock = socket.socket(fileno=int(sys.argv[1]))
server = ThreadingHTTPServer(sock.getsockname(), Work, bind_and_activate=False)
server.socket = sock
server.daemon_threads = False  # a graceful stop finishes the requests it took
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.server_close()
"""

MCP_SERVER = '''
import asyncio
from mcp.server.mcpserver import MCPServer
{broken}
app = MCPServer("work")

@app.tool()
async def work() -> str:
    """Work 5 ms, answer the version."""
    await asyncio.sleep(0.005)
    return "{version}"

app.run()
'''

BROKEN = 'raise SystemExit("v3 is broken")'


def releases(root: Path, template: str, name: str) -> dict[str, Path]:
    out = {}
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        d = root / f"{name}-{version}"
        d.mkdir()
        broken = BROKEN if version == "3.0.0" else ""
        (d / "main.py").write_text(template.format(version=version, broken=broken))
        out[version] = d
    return out


class Peer:
    """Start, call, upgrade, stop. ``call`` answers the version that served."""

    name = ""

    def call(self) -> str:
        raise NotImplementedError

    def upgrade(self, version: str) -> None:
        raise NotImplementedError

    def deploy_broken(self) -> None:
        """Deploy v3; revert to v2 as its operator would."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Zskill(Peer):
    name = "zskill"

    def __init__(self, root: Path) -> None:
        self.rel = releases(root, ZSKILL_SKILL, "work")
        self.d = LocalDaemon(skill_table("work", self.rel["1.0.0"], concurrency=CALLERS))
        self.d.__enter__()
        self.clients = threading.local()

    def call(self) -> str:
        from orchestrator import Client

        c = getattr(self.clients, "c", None)
        if c is None:
            c = self.clients.c = Client(self.d.config)
        return str(c.call("work", "work", timeout=CALL_TIMEOUT_S))

    def _upgrade(self, version: str) -> int:
        cmd = [sys.executable, "-m", "orchestrator", "upgrade", "work", "--from"]
        cmd += [str(self.rel[version]), "--config", str(self.d.config)]
        return subprocess.run(cmd, capture_output=True).returncode

    def upgrade(self, version: str) -> None:
        if self._upgrade(version) != 0:
            raise SystemExit(f"zskill: the upgrade to {version} failed")

    def deploy_broken(self) -> None:
        self._upgrade("3.0.0")  # refused and rolled back by zskill itself

    def close(self) -> None:
        self.d.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Circus(Peer):
    def __init__(self, root: Path, how: str) -> None:
        self.name, self.how = f"circus {how}", how
        self.rel = releases(root, HTTP_WORKER, "http")
        self.current = root / "current"
        self.current.symlink_to(self.rel["1.0.0"])
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        ini = root / "circus.ini"
        ini.write_text(
            f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = "
            f"tcp://127.0.0.1:{free_port()}\nstatsd = False\ncheck_delay = 1\n\n"
            f"[watcher:web]\ncmd = {sys.executable} main.py $(circus.sockets.web)\n"
            f"working_dir = {self.current}\nuse_sockets = True\nnumprocesses = 1\n"
            "graceful_timeout = 10\ncopy_env = True\n\n"
            f"[socket:web]\nhost = 127.0.0.1\nport = {self.port}\n"
        )
        circusd = Path(sys.executable).with_name("circusd")
        self.proc = subprocess.Popen(
            [str(circusd), str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: self.probe() == "1.0.0", 30, "circus to serve")

    def call(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT_S)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return response.read().decode()
        finally:
            conn.close()

    def probe(self) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_S)
        try:
            conn.request("GET", "/")
            return conn.getresponse().read().decode()
        except OSError:
            return None
        finally:
            conn.close()

    def _switch(self, version: str) -> None:
        from circus.client import CircusClient

        link = self.current.with_name("next")
        link.symlink_to(self.rel[version])
        link.replace(self.current)  # atomic: a worker starting now sees one release
        client = CircusClient(endpoint=self.endpoint, timeout=30)
        try:
            props: dict[str, Any] = {"name": "web", "waiting": True}
            if self.how == "reload":
                props["graceful"] = True
            client.call({"command": self.how, "properties": props})
        finally:
            client.stop()

    def upgrade(self, version: str) -> None:
        self._switch(version)

    def deploy_broken(self) -> None:
        self._switch("3.0.0")
        if self.probe() != "3.0.0":  # the operator sees the probe fail and reverts
            self._switch("2.0.0")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class McpStdio(Peer):
    name = "mcp stdio"

    def __init__(self, root: Path) -> None:
        self.rel = releases(root, MCP_SERVER, "mcp")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session: Any = None
        self.ready = asyncio.Event()
        self.restart_to: asyncio.Queue[str | None] = asyncio.Queue()
        self.started: dict[str, bool] = {}
        self.owner = asyncio.run_coroutine_threadsafe(self._own("1.0.0"), self.loop)
        wait_for(lambda: self.started.get("1.0.0") is not None, 30, "the MCP server")

    async def _own(self, version: str | None) -> None:
        """Hold one server session at a time (stdio contexts must be left in
        the task that entered them), replacing it when asked."""
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        while version is not None:
            params = StdioServerParameters(
                command=sys.executable, args=[str(self.rel[version] / "main.py")]
            )
            try:
                with open(os.devnull, "w") as errlog:
                    async with Client(stdio_client(params, errlog=errlog)) as host:
                        self.session = host
                        self.started[version] = True
                        self.ready.set()
                        version = await self.restart_to.get()
                        self.ready.clear()
            except Exception:
                self.started[version or ""] = False
                version = await self.restart_to.get()

    async def _call(self) -> str:
        await self.ready.wait()
        result = await self.session.call_tool("work", {})
        if result.is_error:
            raise RuntimeError(str(result.content))
        return str(result.content[0].text)

    def call(self) -> str:
        return asyncio.run_coroutine_threadsafe(self._call(), self.loop).result(CALL_TIMEOUT_S)

    def _restart(self, version: str) -> bool:
        self.started.pop(version, None)
        self.loop.call_soon_threadsafe(self.restart_to.put_nowait, version)
        wait_for(lambda: self.started.get(version) is not None, 30, f"MCP server {version}")
        return self.started[version]

    def upgrade(self, version: str) -> None:
        if not self._restart(version):
            raise SystemExit(f"mcp: {version} did not start")

    def deploy_broken(self) -> None:
        if not self._restart("3.0.0"):  # the host sees the start fail and reverts
            self._restart("2.0.0")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.restart_to.put_nowait, None)
        with contextlib.suppress(Exception):
            self.owner.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def wait_for(cond: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


class Load:
    """Closed-loop callers: (start, latency, version or None) of every call."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.samples: list[tuple[float, float, str | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(CALLERS)]

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                version: str | None = self.peer.call()
            except Exception:
                version = None
            with self._lock:
                self.samples.append((t0, time.perf_counter() - t0, version))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CALL_TIMEOUT_S + 5)


def run(peer: Peer, warm_s: float) -> dict[str, Any]:
    with Load(peer) as load:
        time.sleep(warm_s)
        upgrade_at = time.perf_counter()
        peer.upgrade("2.0.0")
        time.sleep(warm_s)
        broken_at = time.perf_counter()
        peer.deploy_broken()
        time.sleep(warm_s)
    ok = sorted((t0 + lat, v) for t0, lat, v in load.samples if v is not None)
    lat_ms = [lat * 1000 for _, lat, v in load.samples if v is not None]
    first_v2 = min((t for t, v in ok if v == "2.0.0"), default=float("nan"))
    after = [t for t, _ in ok if t >= broken_at]
    gaps = [b - a for a, b in zip([broken_at, *after], after, strict=False)]
    return {
        "peer": peer.name,
        "calls": len(load.samples),
        "failed": sum(1 for *_, v in load.samples if v is None),
        "p50_ms": statistics.median(lat_ms),
        "max_ms": max(lat for _, lat, _ in load.samples) * 1000,
        "to_new_ms": (first_v2 - upgrade_at) * 1000,
        "outage_ms": max(gaps, default=float("nan")) * 1000,
        "v3_served": any(v == "3.0.0" for _, v in ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-s", type=float, default=3.0)
    parser.add_argument("--peers", default="zskill,circus reload,circus restart,mcp stdio")
    args = parser.parse_args()
    makers: dict[str, Callable[[Path], Peer]] = {
        "zskill": Zskill,
        "circus reload": lambda r: Circus(r, "reload"),
        "circus restart": lambda r: Circus(r, "restart"),
        "mcp stdio": McpStdio,
    }
    rows = []
    for name in args.peers.split(","):
        root = Path(tempfile.mkdtemp(prefix="zp", dir="/tmp"))
        peer = makers[name](root)
        try:
            rows.append(run(peer, args.warm_s))
        finally:
            peer.close()
    head = f"{'peer':<15} {'calls':>6} {'failed':>6} {'p50 ms':>7} {'max ms':>8}"
    print(head + f" {'to new ms':>9} {'outage ms':>9}  broken served")
    for r in rows:
        print(
            f"{r['peer']:<15} {r['calls']:>6} {r['failed']:>6} {r['p50_ms']:>7.2f} "
            f"{r['max_ms']:>8.1f} {r['to_new_ms']:>9.0f} {r['outage_ms']:>9.0f}  "
            f"{'yes' if r['v3_served'] else 'no'}"
        )


if __name__ == "__main__":
    main()
