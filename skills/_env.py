"""What the daemon tells a skill process through its environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import ipc

from ._log import log

DEFAULT_CONCURRENCY = 8


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
        default, which wins over 8.
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
            secret=env.get(ipc.ENV_SECRET, ""),
            concurrency=_positive_int(env, ipc.ENV_CONCURRENCY, fallback),
            max_message_bytes=_positive_int(env, ipc.ENV_MAX_MESSAGE_BYTES, ipc.MAX_MESSAGE_BYTES),
        )


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
