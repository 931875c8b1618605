"""What the daemon tells a skill process through its environment.

All but the instance's secret: that comes through a pipe the process
inherits, ``ZSKILL_SECRET_FD`` naming its fd, read once here and closed, so
it is never in ``/proc/PID/environ`` for another process to read, nor in a
grandchild's environment. ``ZSKILL_SECRET`` itself is still read when no fd
is given (a process started by hand, or by tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import ipc

from ._log import log

DEFAULT_CONCURRENCY = 8
ENV_SECRET_FD = ipc.ENV_SECRET_FD
MAX_SECRET_BYTES = 1024


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    endpoint: str
    instance: str
    skill: str
    """The name the daemon configured; the Hello carries the Skill's own name."""
    secret: str
    concurrency: int
    max_message_bytes: int

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        concurrency: int | None = None,
        default_instance: str = "",
    ) -> RuntimeEnv | None:
        """None when no endpoint is set: the program was not started by zskilld.

        Concurrency: the daemon's (from its config) wins over the Skill's own
        default, which wins over 8. The secret's fd is read and closed (and
        dropped from ``os.environ``): call this once.
        """
        env = os.environ if environ is None else environ
        endpoint = env.get(ipc.ENV_ENDPOINT, "")
        if not endpoint:
            return None
        fallback = concurrency if concurrency is not None else DEFAULT_CONCURRENCY
        return cls(
            endpoint=endpoint,
            instance=env.get(ipc.ENV_INSTANCE, "") or default_instance,
            skill=env.get(ipc.ENV_SKILL, ""),
            secret=_secret(env),
            concurrency=_positive_int(env, ipc.ENV_CONCURRENCY, fallback),
            max_message_bytes=_positive_int(env, ipc.ENV_MAX_MESSAGE_BYTES, ipc.MAX_MESSAGE_BYTES),
        )


def _secret(env: Mapping[str, str]) -> str:
    raw_fd = env.get(ENV_SECRET_FD, "")
    if not raw_fd:
        return env.get(ipc.ENV_SECRET, "")
    if env is os.environ:
        # The fd is closed below and its number may be reused: a grandchild
        # must not go looking for a secret there.
        os.environ.pop(ENV_SECRET_FD, None)
    try:
        fd = int(raw_fd)
    except ValueError:
        log(f"ignoring {ENV_SECRET_FD}={raw_fd!r}: not an fd number")
        return ""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < MAX_SECRET_BYTES:
            data = os.read(fd, MAX_SECRET_BYTES)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    except OSError as exc:
        log(f"cannot read the secret from fd {fd}: {exc}")
        return ""
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        log(f"ignoring {key}={raw!r}: not a positive integer; using {default}")
        return default
    return value
