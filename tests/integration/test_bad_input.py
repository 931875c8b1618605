"""Bad input anywhere gets a clear error; the daemon keeps running and
loses nothing it accepted."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest
import zmq
from helpers import Daemon, example, running_daemon, short_dir, write_config, zskill

from orchestrator import MessageTooLarge
from orchestrator._rundir import RunDir

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def zs() -> Iterator[Daemon]:
    with running_daemon(
        {"echo": example("echo"), "slow": example("slow")}, {"max_message_bytes": LIMIT}
    ) as d:
        d.wait_running("echo", "slow")
        yield d


def up(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"path": ".", "command": ["python", "main.py"], "concurency": 3}, "concurency", "unknown"),
        ({"path": ".", "command": ["python", "main.py"], "concurrency": "many"}, "concurrency", ""),
        ({"path": "."}, "command", "missing"),
        ({"path": ".", "command": []}, "command", ""),
    ],
)
def test_config_errors_name_the_key_and_the_file(
    table: dict[str, object], key: str, words: str
) -> None:
    root = short_dir()
    cfg = root / "zskill.toml"
    write_config(cfg, {"echo": table})
    r = up(cfg)
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert key in out and str(cfg) in out and words in out
    assert "Traceback" not in out
    assert not (root / ".zskill" / "zskilld.pid").exists()


def test_broken_toml_is_a_clear_error() -> None:
    cfg = short_dir() / "zskill.toml"
    cfg.write_text("[skills.echo\npath = 1\n")
    r = up(cfg)
    assert r.returncode == 2 and "not valid TOML" in r.stdout + r.stderr


def test_oversized_messages(zs: Daemon) -> None:
    c = zs.client()
    # refused by the client before sending
    with pytest.raises(MessageTooLarge):
        c.call("echo", "say", {"text": "x" * (2 * LIMIT)})
    # a result over the limit is refused where it is made; the call is answered
    with pytest.raises(MessageTooLarge):
        c.call("echo", "big", {"n": 2 * LIMIT})
    # a raw peer that ignores the limit gets an error reply, not a dead daemon
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(RunDir(zs.run_dir).endpoints.control)
    header = msgpack.packb([21, 7, "echo", "say", 5.0])
    s.send_multipart([header, msgpack.packb({"text": "y" * (LIMIT + 10)})])
    assert s.poll(5000)
    reply = msgpack.unpackb(s.recv_multipart()[0])
    assert reply[0] == 23 and reply[1] == 7 and reply[3][0] == "MessageTooLarge"
    s.close()
    assert c.call("echo", "say", {"text": "still here"}) == "still here"


def garbage(rng: random.Random) -> list[bytes]:
    choices = [
        lambda: [rng.randbytes(rng.randint(0, 64))],
        lambda: [msgpack.packb([rng.randint(-5, 99), "x", 1])],
        lambda: [msgpack.packb([21, "not-an-int", "echo", "say", 1.0]), b"\x80"],
        lambda: [msgpack.packb([20, 1, "list"])],  # missing args
        lambda: [msgpack.packb([1, 1, "echo", "9", "echo-999", 1, 1, [], False, "s"])],  # hello
        lambda: [msgpack.packb([5, 12345, None]), b"\xc0"],  # result for no call
        lambda: [msgpack.packb({"kind": 21})],
        lambda: [b"", b"", b""],
        lambda: [msgpack.packb([21, 1, "echo", "say", 1.0])[:-3]],  # truncated
    ]
    return rng.choice(choices)()


def test_garbage_on_every_socket_while_real_calls_run(zs: Daemon) -> None:
    c = zs.client()
    ep = RunDir(zs.run_dir).endpoints
    ctx = zmq.Context.instance()
    stop = threading.Event()
    sent = {"n": 0}

    def spam(endpoint: str, seed: int) -> None:
        rng = random.Random(seed)
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, f"intruder-{seed}".encode())
        s.connect(endpoint)
        while not stop.is_set() and sent["n"] < 3000:
            s.send_multipart(garbage(rng))
            sent["n"] += 1
            while s.poll(0):
                s.recv_multipart()  # error replies; drain them
        s.close()

    spammers = [
        threading.Thread(target=spam, args=(ep.control, 1)),
        threading.Thread(target=spam, args=(ep.workers, 2)),
    ]
    for t in spammers:
        t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(c.call, "echo", "say", {"text": str(i)}) for i in range(300)]
            assert [f.result(timeout=30) for f in futs] == [str(i) for i in range(300)]
    finally:
        stop.set()
        for t in spammers:
            t.join(10)
    assert sent["n"] > 100
    st = {s["name"]: s for s in c.list()}
    assert st["echo"]["state"] == "running" and st["slow"]["state"] == "running"
    assert os.path.exists(ep.control.removeprefix("ipc://"))


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf"])
def test_a_bad_timeout_is_a_usage_error(zs: Daemon, value: str) -> None:
    """Hardening 9 and 13: `--timeout 0` gave up at once saying 'no daemon'
    while the daemon ran the call with its default; `--timeout nan` was a
    traceback. Both are refused before anything is sent."""
    r = zskill(zs.config, "call", "echo", "say", "--json", '{"text": "hi"}', "--timeout", value)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is not a positive, finite number of seconds" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    ok = zskill(zs.config, "call", "echo", "say", "--json", '{"text": "hi"}', "--timeout", "5")
    assert ok.returncode == 0 and ok.stdout.strip() == "hi"


@pytest.mark.parametrize("owner", ["a file", "another user"])
def test_an_unusable_run_dir_is_a_clear_error_for_every_command(owner: str) -> None:
    """Hardening 13: a run dir that is a file, or another user's, gave `logs`
    and `keys` a traceback (exit 1); every command now says why, exit 2."""
    if owner == "another user" and os.getuid() != 0:
        pytest.skip("giving a directory to another user (chown) needs root")
    root = short_dir()
    try:
        cfg = root / "zskill.toml"
        write_config(cfg, {"echo": example("echo")}, {"run_dir": "run"})
        run_dir = root / "run"
        if owner == "a file":
            run_dir.write_text("not a directory\n")
            why = "it is not a directory"
        else:
            run_dir.mkdir(mode=0o755)
            os.chown(run_dir, 65534, 65534)
            why = "belongs to uid 65534"
        for argv in (["up"], ["list"], ["call", "echo", "say"], ["logs", "echo"], ["keys"]):
            r = zskill(cfg, *argv)
            out = r.stdout + r.stderr
            assert r.returncode == 2, (argv, out)
            assert f"cannot use {run_dir} as the run dir" in r.stderr and why in r.stderr, out
            assert "Traceback" not in out
        if owner == "another user":
            assert list(run_dir.iterdir()) == []  # nothing written into theirs (keys, logs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_config_broken_while_the_daemon_runs_does_not_lock_the_operator_out() -> None:
    """A skill table broken after `up` (a key removed) made every command
    exit 2, `down` included: the running daemon could not be reached. Commands
    that talk to it read the [daemon] table alone then, with a warning;
    `up` and `reload`, which apply the file, still refuse it."""
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        text = d.config.read_text()
        d.config.write_text(text + '\n[skills.broken]\npath = "."\n')
        listed = zskill(d.config, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "warning:" in listed.stderr and "skills.broken.command" in listed.stderr
        assert "zskill reload" in listed.stderr
        called = zskill(d.config, "call", "echo", "say", "--json", '{"text": "hi"}')
        assert called.returncode == 0 and called.stdout.strip() == "hi", called.stderr
        refused = zskill(d.config, "reload")
        assert refused.returncode == 2 and "skills.broken.command" in refused.stderr
        assert up(d.config).returncode == 2
        down = zskill(d.config, "down")
        assert down.returncode == 0, down.stderr
        assert "zskill daemon stopped" in down.stdout
        assert d.proc is not None and d.proc.wait(10) is not None


def test_a_daemon_is_reached_through_a_toml_error_and_a_changed_run_dir() -> None:
    """A TOML syntax error, or a run_dir changed while the daemon runs, left
    the file no road to the daemon: `down` said nothing ran, and `up` started
    a second daemon with the same skills. `up` notes the run dir it serves;
    commands follow the note, and a second `up` is refused."""
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        good = d.config.read_text()
        d.config.write_text(good + "\n[skills.half\n")
        listed = zskill(d.config, "list")
        assert listed.returncode == 0, listed.stderr
        assert "not valid TOML" in listed.stderr and "echo" in listed.stdout

        d.config.write_text(good.replace('run_dir = ".zskill"', 'run_dir = ".moved"'))
        assert ".moved" in d.config.read_text()
        moved = zskill(d.config, "call", "echo", "say", "--json", '{"text": "hi"}')
        assert moved.returncode == 0 and moved.stdout.strip() == "hi", moved.stderr
        assert "the daemon serving it runs on" in moved.stderr
        second = up(d.config)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "already serves" in second.stderr and str(d.run_dir) in second.stderr
        down = zskill(d.config, "down")
        assert down.returncode == 0 and "zskill daemon stopped" in down.stdout, down.stderr
        assert d.proc is not None and d.proc.wait(10) is not None
        gone = zskill(d.config, "down")  # the note went with the daemon: the file rules again
        assert gone.returncode == 0 and ".moved" in gone.stdout, gone.stdout + gone.stderr
