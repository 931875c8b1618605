"""What the SDK reads from the environment the daemon sets."""

from __future__ import annotations

import os

import pytest

import ipc
from skills._env import DEFAULT_CONCURRENCY, ENV_SECRET_FD, RuntimeEnv


def test_no_endpoint_means_not_under_the_daemon() -> None:
    assert RuntimeEnv.from_environ({}) is None
    assert RuntimeEnv.from_environ({ipc.ENV_ENDPOINT: ""}) is None


def test_everything_set() -> None:
    env = RuntimeEnv.from_environ(
        {
            ipc.ENV_ENDPOINT: "ipc:///tmp/zs/workers.sock",
            ipc.ENV_INSTANCE: "echo-3",
            ipc.ENV_SKILL: "echo",
            ipc.ENV_SECRET: "s3cret",
            ipc.ENV_CONCURRENCY: "4",
            ipc.ENV_MAX_MESSAGE_BYTES: "2048",
        },
        concurrency=16,
    )
    assert env == RuntimeEnv("ipc:///tmp/zs/workers.sock", "echo-3", "echo", "s3cret", 4, 2048)


@pytest.mark.parametrize(
    ("from_env", "from_skill", "expected"),
    [
        ("4", 16, 4),
        (None, 16, 16),
        (None, None, DEFAULT_CONCURRENCY),
        ("zero", 2, 2),
        ("0", None, DEFAULT_CONCURRENCY),
    ],
)
def test_concurrency_precedence(
    from_env: str | None, from_skill: int | None, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {ipc.ENV_ENDPOINT: "ipc:///tmp/x"}
    if from_env is not None:
        environ[ipc.ENV_CONCURRENCY] = from_env
    env = RuntimeEnv.from_environ(environ, concurrency=from_skill)
    assert env is not None and env.concurrency == expected
    if from_env in ("zero", "0"):
        assert "ignoring ZSKILL_CONCURRENCY" in capsys.readouterr().err


def test_defaults() -> None:
    env = RuntimeEnv.from_environ({ipc.ENV_ENDPOINT: "ipc:///tmp/x"}, default_instance="echo-99")
    assert env is not None
    assert (env.instance, env.skill, env.secret) == ("echo-99", "", "")
    assert env.max_message_bytes == ipc.MAX_MESSAGE_BYTES


def test_the_secret_comes_from_its_fd_once_and_the_fd_is_closed() -> None:
    """Hardening 11: the daemon passes the secret through an inherited pipe,
    not the environment; the SDK reads it and closes the fd."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"from-the-pipe")
    os.close(write_fd)
    environ = {
        ipc.ENV_ENDPOINT: "ipc:///tmp/x",
        ENV_SECRET_FD: str(read_fd),
        ipc.ENV_SECRET: "ignored when there is an fd",
    }
    env = RuntimeEnv.from_environ(environ)
    assert env is not None and env.secret == "from-the-pipe"
    with pytest.raises(OSError):
        os.fstat(read_fd)  # closed: nothing later in the process can read it


@pytest.mark.parametrize("raw", ["seven", "987654"])
def test_an_unusable_secret_fd_gives_no_secret(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = RuntimeEnv.from_environ({ipc.ENV_ENDPOINT: "ipc:///tmp/x", ENV_SECRET_FD: raw})
    assert env is not None and env.secret == ""
    assert raw in capsys.readouterr().err
