"""tcp:// endpoints: CurveZMQ keys required, only authorized clients served."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from helpers import Daemon, example, short_dir, wait_for

from orchestrator import Client, DaemonUnavailable, ZskillError
from orchestrator._curve import create_client_keys, ensure_server_keys
from orchestrator._rundir import RunDir


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


@contextlib.contextmanager
def tcp_daemon(*clients: str) -> Iterator[tuple[Daemon, str, dict[str, Path]]]:
    """A daemon serving echo on tcp, with a key pair for each client named."""
    root = short_dir()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    d = Daemon(root, {"echo": example("echo")}, {"tcp_control": endpoint})
    try:
        ensure_server_keys(d.run_dir)
        secrets = {name: create_client_keys(d.run_dir, name) for name in clients}
        d.start()
        d.wait_running("echo")
        yield d, endpoint, secrets
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def tcp_client(d: Daemon, endpoint: str, secret: Path, timeout: float) -> Client:
    return Client(
        endpoint,
        server_key=RunDir(d.run_dir).keys / "server.key",
        client_key=secret,
        timeout=timeout,
    )


def served(c: Client, text: str) -> bool:
    try:
        return bool(c.call("echo", "say", {"text": text}, timeout=1) == text)
    except ZskillError:
        return False


def test_a_revoked_client_key_is_refused_without_a_restart() -> None:
    """Hardening 10: deleting a client's key from keys/clients/ had no effect
    until the daemon restarted. Now the client is refused within seconds,
    its open connection included; the other clients serve on."""
    with tcp_daemon("agent", "other") as (d, endpoint, secrets):
        agent = tcp_client(d, endpoint, secrets["agent"], 2)
        other = tcp_client(d, endpoint, secrets["other"], 2)
        try:
            assert served(agent, "before") and served(other, "before")
            (RunDir(d.run_dir).client_keys / "agent.key").unlink()
            wait_for(lambda: not served(agent, "revoked?"), 15, what="the agent refused")
            assert not served(agent, "again") and not served(agent, "and again")
            fresh = tcp_client(d, endpoint, secrets["agent"], 1)
            try:
                assert not served(fresh, "new connection")
            finally:
                fresh.close()
            wait_for(lambda: served(other, "after"), 15, what="the other client served")
        finally:
            agent.close()
            other.close()


def test_an_ipc_client_whose_id_starts_with_t_is_answered_with_tcp_on() -> None:
    """Hardening 10: tcp peers were told apart by a b"T" put before their
    routing id, so the answers to an ipc client whose id starts with "T"
    went to the tcp socket, and were lost."""
    with tcp_daemon("agent") as (d, endpoint, secrets):
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, b"Tipc-client")
        s.connect(RunDir(d.run_dir).endpoints.control)
        remote = tcp_client(d, endpoint, secrets["agent"], 5)
        try:
            s.send(msgpack.packb([20, 1, "list", {}]))
            assert s.poll(5000), "no answer to an ipc client named T..."
            reply = msgpack.unpackb(s.recv())
            assert reply[:2] == [22, 1] and reply[2][0]["name"] == "echo", reply
            assert served(remote, "tcp too")
        finally:
            s.close()
            remote.close()
