"""zskill's orchestrator: the daemon (zskilld), its client library and the CLI.

The core agent loop calls skills through :class:`Client` (threads) or
:class:`AsyncClient` (asyncio)::

    from orchestrator import Client

    with Client("zskill.toml") as zs:
        print(zs.call("echo", "say", {"text": "hi"}))

Every error is a :class:`ZskillError`; see ``ipc._errors`` for the tree.
"""

from ipc import (
    BadRequest,
    CallError,
    CallTimeout,
    ConfigError,
    ControlError,
    DaemonRunning,
    DaemonUnavailable,
    InvalidArguments,
    MessageTooLarge,
    OutcomeUnknown,
    PayloadError,
    ProtocolError,
    ProtocolMismatch,
    RemoteError,
    SkillNotFound,
    SkillUnavailable,
    ToolNotFound,
    UpgradeFailed,
    UpgradeInProgress,
    ZskillError,
)

from ._client.aio import AsyncClient
from ._client.sync import CallResult, Client, EventStream
from ._config import Config, SkillConfig
from ._config import load as load_config

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "CallError",
    "CallResult",
    "CallTimeout",
    "Client",
    "Config",
    "ConfigError",
    "ControlError",
    "DaemonRunning",
    "DaemonUnavailable",
    "EventStream",
    "InvalidArguments",
    "MessageTooLarge",
    "OutcomeUnknown",
    "PayloadError",
    "ProtocolError",
    "ProtocolMismatch",
    "RemoteError",
    "SkillConfig",
    "SkillNotFound",
    "SkillUnavailable",
    "ToolNotFound",
    "UpgradeFailed",
    "UpgradeInProgress",
    "ZskillError",
    "load_config",
]
