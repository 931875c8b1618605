"""The vocabulary the daemon and its readers share: skill states, event
kinds, rollout operations and statuses as enums, and the status map that
``list`` returns as TypedDicts.

The daemon writes these; the CLI, the dashboard, the MCP bridge and the
metrics read them. Every enum is a ``StrEnum``: on the wire and in
``events.jsonl`` each member is its plain string, so old event files and
scripts that compare strings keep working.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class SkillState(StrEnum):
    """What ``zskill list`` shows in its state column."""

    STARTING = "starting"
    RUNNING = "running"
    UPGRADING = "upgrading"
    BACKOFF = "backoff"
    ERRORED = "errored"
    STOPPING = "stopping"
    STOPPED = "stopped"


class EventKind(StrEnum):
    """The ``type`` of an event (see ``orchestrator._daemon.events``)."""

    DAEMON_START = "daemon.start"
    DAEMON_STOP = "daemon.stop"
    SPAWN = "spawn"
    READY = "ready"
    EXIT = "exit"
    UNRESPONSIVE = "unresponsive"
    BACKOFF = "backoff"
    RESTART = "restart"
    ERRORED = "errored"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ROLLOUT = "rollout"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"
    TOOLS_CHANGED = "tools_changed"
    RELOAD = "reload"  # the config file read again (ok, or refused and why)
    REMOVED = "removed"  # a skill gone from the config, its processes gone too
    CHANGED = "changed"  # a watched skill's files changed (an upgrade follows)
    CANCEL_IGNORED = "cancel_ignored"
    DRAIN = "drain"  # a process stops taking calls: its grace and the calls it finishes
    DRAINED = "drained"  # ...and is gone: how long that took, each call's run time


class RolloutOp(StrEnum):
    """What put a new process into service."""

    START = "start"
    RESTART = "restart"
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"
    SCALE = "scale"


class StepStatus(StrEnum):
    """How far one step of a rollout got."""

    STARTED = "started"
    OK = "ok"
    FAILED = "failed"


class InstanceStatus(TypedDict):
    """One process of a skill, as ``list`` shows it."""

    instance: str
    version: str
    pid: int
    state: str  # the router's InstanceState value: spawned, checking, ready, ...
    in_flight: int
    cancelling: int  # of in_flight: cancelled calls whose handler still runs


class LongestCall(TypedDict):
    """The call that has run longest among those a skill is running now."""

    call_id: int
    tool: str
    instance: str
    running_s: float


class VersionStatus(TypedDict):
    """One live version of a skill: its share of calls and its figures
    over the rolling window (two while a canary runs)."""

    version: str
    role: str  # "stable" or "canary"
    weight: int  # percent of the calls without a session
    instances: int
    calls_per_s: float
    errors: int
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None


class SkillStatus(TypedDict):
    """One skill, as ``list`` returns it (``zskill list --json``)."""

    name: str
    state: str  # a SkillState value
    version: str
    pid: int | None
    uptime_s: float
    restarts: int
    in_flight: int
    cancelling: int  # of in_flight: cancelled, the handler not yet returned
    queued: int
    longest_call: LongestCall | None
    concurrency: int
    tools: list[str]
    last_exit: str | None
    last_stderr: list[str]  # the last stderr lines of the process that failed last
    calls_per_s: float
    errors: int
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_percent: float
    rss_bytes: int
    release: int | None
    source: str
    instances: list[InstanceStatus]
    instances_wanted: int  # `instances` in the config, or as `zskill scale` set it
    versions: list[VersionStatus]
    rollout: dict[str, Any] | None  # the rollout in progress (a canary's steps, weights)


__all__ = [
    "EventKind",
    "InstanceStatus",
    "LongestCall",
    "RolloutOp",
    "SkillState",
    "SkillStatus",
    "StepStatus",
    "VersionStatus",
]
