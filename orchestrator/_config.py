"""zskill.toml: the daemon's settings and one table per skill.

    [daemon]
    run_dir = ".zskill"              # relative to the config file
    log_max_bytes = 10485760         # rotate each log at this size...
    log_keep = 5                     # ...keeping this many older files
    metrics_port = 9464              # serve Prometheus metrics (off when unset)
    idempotency_max_keys = 10000     # outcomes of keyed calls kept (and bytes, age:
    idempotency_max_bytes = 67108864 #   the oldest go first past any of the three)
    idempotency_max_age_s = 604800

    [skills.echo]
    path = "skills/examples/echo"    # the process's cwd, relative to the config file
    command = ["python", "main.py"]  # "python" is the daemon's own interpreter
    concurrency = 8
    env = { LEVEL = "info" }
    env_file = ".env"                # more variables (secrets), relative to the config file
    start_timeout_s = 10
    health_timeout_s = 5
    grace_s = 30                     # drain before SIGTERM ("auto": from the calls' tail)...
    kill_timeout_s = 5               # ...then SIGKILL of the process tree
    grace_min_s = 5                  # with grace_s = "auto": the drain window's floor...
    grace_max_s = 300                # ...and its ceiling
    data_dir = "data/echo"           # state kept across releases (default: run dir)
    release_exclude = [".venv"]      # names or globs never copied into a release
    handoff_timeout_s = 30           # export_state + import_state during an upgrade
    memory_limit = "512MiB"          # per process tree; over it: a zero-downtime restart
    max_queued = 10000               # calls waiting for a slot; more are refused at once
    watch = false                    # upgrade in place when its files change (zskill up --watch)
    cancel_grace_s = 10              # a cancelled call still running this long: replace the process
    instances = 1                    # processes sharing the skill's queue

Unknown keys and wrong types are errors naming the key and the file.
Values of ``env`` and of the ``env_file`` are never shown in an error.
``memory_limit`` is a number of bytes or a string with a unit: B, kB, MB,
GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), any case.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ipc import MAX_MESSAGE_BYTES, ConfigError

from ._envfile import read_env_file
from ._rundir import RunDir

DEFAULT_CONFIG = "zskill.toml"
SKILL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEFAULT_MAX_QUEUED = 10_000
MIN_MEMORY_LIMIT = 1 << 20
MAX_INSTANCES = 64  # less could not hold an interpreter: a restart loop

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as ``"512MiB"`` or ``"1.5GB"``;
    ValueError saying what is accepted."""
    if isinstance(value, bool):  # an int to Python, never a size to a user
        raise ValueError("must be a size such as 512MiB or a number of bytes")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.match(value)) and m[2].lower() in _UNITS:
        n = int(float(m[1]) * _UNITS[m[2].lower()])
    else:
        raise ValueError(
            "must be a number of bytes or a size with a unit "
            "(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), such as 512MiB"
        )
    if n < MIN_MEMORY_LIMIT:
        raise ValueError(f"must be at least 1MiB ({MIN_MEMORY_LIMIT} bytes)")
    return n


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DaemonSettings(_Strict):
    run_dir: str = ".zskill"
    heartbeat_s: float = Field(default=1.0, gt=0)
    liveness_s: float = Field(default=5.0, gt=0)
    call_timeout_s: float = Field(default=60.0, gt=0)
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, gt=1024)
    releases_kept: int = Field(default=5, ge=1)
    # Each skill's log and the daemon's own rotate at log_max_bytes, keeping
    # log_keep older files: at most (log_keep + 1) * log_max_bytes per log.
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_keep: int = Field(default=5, ge=0)
    # Prometheus metrics over HTTP; off unless a port is set (or --metrics-port).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # A tcp:// control endpoint for clients on other hosts; needs CurveZMQ keys.
    tcp_control: str | None = Field(default=None, pattern=r"^tcp://\S+:\d+$")
    # The outcomes of calls with an idempotency key that the daemon keeps
    # (in memory and in the run dir); past any bound the oldest go first.
    idempotency_max_keys: int = Field(default=10_000, ge=1)
    idempotency_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    idempotency_max_age_s: float = Field(default=7 * 24 * 3600.0, gt=0)


class SkillSettings(_Strict):
    path: str
    command: list[str] = Field(min_length=1)
    concurrency: int = Field(default=8, ge=1, le=10_000)
    env: dict[str, str] = Field(default_factory=dict)
    start_timeout_s: float = Field(default=10.0, gt=0)
    health_timeout_s: float = Field(default=5.0, gt=0)
    # Seconds a draining process may take to finish its calls, or "auto":
    # sized from the skill's recent call durations (see _daemon.grace).
    grace_s: float | Literal["auto"] = 30.0
    grace_min_s: float = Field(default=5.0, ge=0)
    grace_max_s: float = Field(default=300.0, gt=0)
    kill_timeout_s: float = Field(default=5.0, ge=0)
    autostart: bool = True
    restart: Literal["on-failure", "always", "never"] = "on-failure"
    max_restarts: int = Field(default=5, ge=0)
    restart_window_s: float = Field(default=60.0, gt=0)
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    # Bytes of resident memory one process tree may use (None: no limit).
    # Over it, the process is replaced by a zero-downtime restart.
    memory_limit: int | None = None
    # Calls waiting in the daemon for a free slot; one more is refused at
    # once with SkillOverloaded, so a flood cannot grow the daemon unbounded.
    max_queued: int = Field(default=DEFAULT_MAX_QUEUED, ge=1)
    # A .env file of more variables, read again at every start of a process
    # (see orchestrator._envfile); the env table wins over it.
    env_file: str | None = None
    # Upgrade in place whenever a file under path changes (see _daemon.watch).
    watch: bool = False
    # How long a handler may run on after its call was cancelled (its caller
    # gave up, its deadline passed). Past it, the process counts as hung and
    # is replaced by a zero-downtime restart, so hung calls cannot hold a
    # skill's slots for ever.
    cancel_grace_s: float = Field(default=10.0, gt=0)
    # State that outlives releases: the same directory for every version,
    # restart and rollback (relative to the config file; default under the
    # run dir).
    data_dir: str | None = None
    # Names or globs (of a file or directory name, or of a path relative to
    # the skill's directory) left out of release copies; None: the defaults.
    release_exclude: list[str] | None = None
    # An upgrade with state handoff: the old version's export_state and the
    # new one's import_state, together, within this.
    handoff_timeout_s: float = Field(default=30.0, gt=0)
    # Processes serving the skill's one queue (`zskill scale` changes it live).
    instances: int = Field(default=1, ge=1, le=MAX_INSTANCES)

    @field_validator("grace_s", mode="before")
    @classmethod
    def _grace(cls, value: object) -> object:
        if isinstance(value, bool) or not (
            value == "auto" or (isinstance(value, (int, float)) and value >= 0)
        ):
            raise ValueError('must be a number of seconds (>= 0) or "auto"')
        return float(value) if isinstance(value, int) else value

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _size(cls, value: object) -> int | None:
        return None if value is None else parse_size(value)


class AgentSettings(_Strict):
    """The ``[agent]`` table: the core agent loop (the ``zskill[agent]`` extra)."""

    # "module:attribute": a pydantic-ai Agent or an orchestrator.agent.DurableAgent.
    agent: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    # Tasks one loop worker runs at once (the rest wait on the queue).
    concurrency: int = Field(default=4, ge=1, le=1000)
    # None: SQLite under the run dir. postgresql://... to share tasks between hosts.
    database_url: str | None = None
    # The loop version recorded with each step; None: a hash of the agent's module.
    version: str | None = None


class _File(_Strict):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    skills: dict[str, SkillSettings] = Field(default_factory=dict)
    agent: AgentSettings = Field(default_factory=AgentSettings)


@dataclass(frozen=True, slots=True)
class SkillConfig:
    """One skill's settings with paths resolved."""

    name: str
    path: Path
    command: tuple[str, ...]
    settings: SkillSettings
    env_file: Path | None = None  # settings.env_file, resolved
    data_dir: Path | None = None  # resolved ``data_dir``; None: the run dir's default

    def file_env(self) -> dict[str, str]:
        """The env_file's variables, read now ({} without one); ConfigError
        naming the file and line, never a value."""
        return {} if self.env_file is None else read_env_file(self.env_file)

    def argv(self, origin: Path | None = None) -> list[str]:
        """The argv to start the skill; ``python`` is this interpreter.

        A relative program path (``.venv/bin/python``) names a file beside
        the code the release came from, ``origin``: a release copy leaves
        out ``.venv``, and a rollback must find the venv of its own source."""
        cmd = list(self.command)
        if cmd[0] in ("python", "python3"):
            cmd[0] = sys.executable
        elif origin is not None and "/" in cmd[0] and not Path(cmd[0]).is_absolute():
            cmd[0] = str(origin / cmd[0])
        return cmd

    @property
    def auto_grace(self) -> bool:
        return self.settings.grace_s == "auto"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    run_dir: Path
    daemon: DaemonSettings
    skills: dict[str, SkillConfig]
    agent: AgentSettings = field(default_factory=AgentSettings)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def data_dir(self, skill: str | SkillConfig, *, make: bool = False) -> Path:
        """A skill's data directory: the same for every version, restart and
        rollback, never inside a release (``make``: create it, mode 0700).
        A SkillConfig is taken as is (one loaded since, by a reload)."""
        cfg = self.skills.get(skill) if isinstance(skill, str) else skill
        name = skill if isinstance(skill, str) else skill.name
        path = cfg.data_dir if cfg is not None and cfg.data_dir else None
        path = path or RunDir(self.run_dir).skill_data(name)
        if make:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _explain(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        key = _dotted(err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key {key!r}")
        elif err["type"] == "missing":
            lines.append(f"{path}: missing key {key!r}")
        else:
            # A validator's own ValueError reads best without pydantic's prefix.
            ctx = err.get("ctx") or {}
            own = err["type"] == "value_error" and "error" in ctx
            msg = str(ctx["error"]) if own else err["msg"]
            # What was given, unless it may be a secret (a value of env).
            loc = err["loc"]
            secret = len(loc) >= 3 and loc[0] == "skills" and loc[2] == "env"
            got = "" if secret else f" (got {err.get('input')!r})"
            lines.append(f"{path}: key {key!r}: {msg}{got}")
    return "\n".join(lines)


def parse(data: dict[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; raise ConfigError naming key and file."""
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path), file=str(path)) from None
    base = path.parent
    skills = {}
    for name, s in raw.skills.items():
        if not SKILL_NAME.match(name):
            raise ConfigError(
                f"{path}: skill name {name!r} must start with a letter and hold only "
                "letters, digits, '-' and '_' (at most 64)",
                file=str(path),
            )
        env_file = (base / s.env_file).resolve() if s.env_file is not None else None
        data_dir = (base / s.data_dir).resolve() if s.data_dir is not None else None
        skills[name] = SkillConfig(
            name, (base / s.path).resolve(), tuple(s.command), s, env_file, data_dir
        )
    run_dir = (base / raw.daemon.run_dir).resolve()
    return Config(path=path, run_dir=run_dir, daemon=raw.daemon, skills=skills, agent=raw.agent)


def load(path: str | Path | None = None) -> Config:
    """Read ``path`` (default ./zskill.toml)."""
    p, data = _read(path)
    return parse(data, p)


def load_link(path: str | Path | None = None) -> tuple[Config, ConfigError | None]:
    """The config as far as reaching a running daemon needs it: the whole file
    when it is valid; else, when its ``[daemon]`` table alone is, that table
    with no skills, and the file's error beside it. A daemon keeps the config
    it read at its start (or last reload), so a file broken since must not
    keep ``down``, ``list`` or ``logs`` from reaching it."""
    p, data = _read(path)
    try:
        return parse(data, p), None
    except ConfigError as exc:
        daemon = data.get("daemon", {})
        if not isinstance(daemon, dict):
            raise
        try:
            return parse({"daemon": daemon}, p), exc
        except ConfigError:
            raise exc from None


def _read(path: str | Path | None) -> tuple[Path, dict[str, Any]]:
    p = Path(path if path is not None else DEFAULT_CONFIG).expanduser()
    p = p.absolute()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such config file "
            "(pass --config PATH or set ZSKILL_CONFIG, or run where zskill.toml is)",
            file=str(p),
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not a text file in UTF-8 (byte {exc.start}: {exc.reason}); TOML files are UTF-8",
            file=str(p),
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}", file=str(p)) from None
    return p, data
