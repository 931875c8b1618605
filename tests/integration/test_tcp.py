"""tcp:// endpoints: CurveZMQ keys required, only authorized clients served."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest
import zmq
import zmq.auth
from helpers import Daemon, example, short_dir

from orchestrator import Client, DaemonUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zskill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, timeout=60
    )


def test_tcp_refused_without_keys_then_served_with_them() -> None:
    root = short_dir()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    d = Daemon(root, {"echo": example("echo")}, {"tcp_control": endpoint})
    try:
        r = zskill("up", "--config", str(d.config))
        assert r.returncode != 0
        assert "CurveZMQ" in r.stdout + r.stderr and "zskill keys" in r.stdout + r.stderr

        r = zskill("keys", "--client", "agent", "--config", str(d.config))
        assert r.returncode == 0, r.stderr
        keys = d.run_dir / "keys"
        d.start()
        d.wait_running("echo")
        c = Client(
            endpoint,
            server_key=keys / "server.key",
            client_key=keys / "clients" / "agent.key_secret",
            timeout=5,
        )
        try:
            assert c.call("echo", "say", {"text": "over tcp"}) == "over tcp"
            assert c.list()[0]["name"] == "echo"
        finally:
            c.close()

        # a client with keys the daemon never authorized gets nothing
        other = short_dir()
        zmq.auth.create_certificates(str(other), "stranger")
        bad = Client(
            endpoint,
            server_key=keys / "server.key",
            client_key=other / "stranger.key_secret",
            timeout=0.5,
        )
        try:
            with pytest.raises(DaemonUnavailable):
                bad.call("echo", "say", {"text": "x"}, timeout=0.5)
        finally:
            bad.close()
            shutil.rmtree(other, ignore_errors=True)
        # and a plain, unencrypted peer cannot talk to it either
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(b"\x95\x14\x01\xa4list\x80")
        assert not s.poll(700)
        s.close()
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
