"""zskill's orchestrator: the daemon (zskilld), its client library and the CLI.

The core agent loop calls skills through :class:`Client` (threads) or
:class:`AsyncClient` (asyncio)::

    from orchestrator import Client

    with Client("zskill.toml") as zs:
        print(zs.call("echo", "say", {"text": "hi"}))

Every error is a :class:`ZskillError`; see ``ipc._errors`` for the tree.
Tests of code that uses the clients can run them against
:class:`orchestrator.testing.FakeDaemon` instead of a daemon.

``import orchestrator`` is cheap: the errors come from ``ipc`` (pyzmq and
msgpack only), everything else loads on first use (PEP 562), so the CLI and
a script that only catches errors never pay for pydantic, psutil or asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ipc import (
    BadRequest,
    CallError,
    CallTimeout,
    Cancelled,
    ConfigError,
    ControlError,
    DaemonRunning,
    DaemonUnavailable,
    InvalidArguments,
    KeyConflict,
    MessageTooLarge,
    OutcomeUnknown,
    PayloadError,
    ProtocolError,
    RemoteError,
    SkillNotFound,
    SkillOverloaded,
    SkillUnavailable,
    ToolNotFound,
    UpgradeFailed,
    UpgradeInProgress,
    ZskillError,
)

if TYPE_CHECKING:
    from ._client.aio import AsyncClient
    from ._client.common import CallResult
    from ._client.progress import CallHandle, Progress
    from ._client.sync import Client, EventStream
    from ._config import Config, SkillConfig
    from ._config import load as load_config

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "CallError",
    "CallHandle",
    "CallResult",
    "CallTimeout",
    "Cancelled",
    "Client",
    "Config",
    "ConfigError",
    "ControlError",
    "DaemonRunning",
    "DaemonUnavailable",
    "EventStream",
    "InvalidArguments",
    "KeyConflict",
    "MessageTooLarge",
    "OutcomeUnknown",
    "PayloadError",
    "Progress",
    "ProtocolError",
    "RemoteError",
    "SkillConfig",
    "SkillNotFound",
    "SkillOverloaded",
    "SkillUnavailable",
    "ToolNotFound",
    "UpgradeFailed",
    "UpgradeInProgress",
    "ZskillError",
    "load_config",
]

_LAZY: dict[str, tuple[str, str]] = {
    # public name: (module, its name there)
    "AsyncClient": ("._client.aio", "AsyncClient"),
    "CallHandle": ("._client.progress", "CallHandle"),
    "CallResult": ("._client.common", "CallResult"),
    "Progress": ("._client.progress", "Progress"),
    "Client": ("._client.sync", "Client"),
    "EventStream": ("._client.sync", "EventStream"),
    "Config": ("._config", "Config"),
    "SkillConfig": ("._config", "SkillConfig"),
    "load_config": ("._config", "load"),
}


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use, then keep the name here."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
