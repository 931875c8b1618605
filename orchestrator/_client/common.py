"""What :class:`Client` and :class:`AsyncClient` share: finding the daemon,
framing requests, turning replies into values or errors.

No I/O on sockets here, so the sync and async clients differ only in how they
wait. Everything a reply can carry goes through :func:`ipc.decode` first; this
module sees typed messages only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import zmq

import ipc
from ipc import (
    CallReply,
    CallRequest,
    ConfigError,
    DaemonUnavailable,
    Event,
    InvalidArguments,
    Message,
    MessageTooLarge,
    ProtocolError,
    Reply,
    Request,
    ZskillError,
)

from .._curve import CurveClient
from .._rundir import RunDir
from .keyed import canonical, check_key, check_session, check_traceparent
from .link import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS
from .progress import progress_of

if TYPE_CHECKING:
    from .._config import Config

_log = logging.getLogger(__name__)

Frames = list[bytes]
ProgressCallback = Callable[[Any], None]
"""Called with each Progress body of a control operation, in the caller's thread
(or task), before the final reply."""
Records = list[dict[str, Any]]  # status maps, releases, events

CALL_REPLY_MARGIN_S = 2.0
"""How much longer than a call's ``timeout_s`` the client waits for the reply.
The daemon itself answers CallTimeout at the deadline; the margin covers the
trip back, so only a daemon that is gone or wedged trips the client's own limit."""

LIVENESS_EVERY_S = 2.0
"""While a wait goes on, how often to check that the daemon process still
exists. A reply that can never come then fails in seconds, not at the deadline
(or never, for control operations that wait without a limit)."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """A call's result with who served it and how long the round trip took."""

    value: Any
    version: str
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client connects, resolved once at construction."""

    run_dir: Path
    endpoints: ipc.Endpoints
    max_bytes: int
    curve: CurveClient | None = None  # set for a tcp:// endpoint
    remote: str = ""  # the tcp:// endpoint, if that is where the daemon is

    @classmethod
    def resolve(
        cls,
        target: str | Path | Config | Target,
        max_message_bytes: int | None,
        server_key: str | Path | None = None,
        client_key: str | Path | None = None,
    ) -> Target:
        """A Config, a config file (read for its run_dir), an existing run dir,
        or a ``tcp://host:port`` endpoint (with CurveZMQ key files).
        Without ``max_message_bytes``, the config's limit (the daemon's) applies."""
        if isinstance(target, Target):
            return target
        if isinstance(target, str) and target.startswith("tcp://"):
            curve = None
            if server_key is not None and client_key is not None:
                curve = CurveClient.load(server_key, client_key)
            if curve is None:
                raise ConfigError(
                    f"{target}: a tcp:// daemon needs CurveZMQ keys "
                    "(server_key= and client_key=; see `zskill keys`)"
                )
            limit = ipc.MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
            return cls(Path("/"), ipc.Endpoints(target, "", ""), limit, curve, target)
        if isinstance(target, (str, os.PathLike)):
            path = Path(target).expanduser()
            if path.is_dir():
                return cls.for_run_dir(path, max_message_bytes)
            from .._config import load  # pydantic: loaded only for a config file to read

            target = load(path)
        if max_message_bytes is None:
            max_message_bytes = target.daemon.max_message_bytes
        return cls.for_run_dir(target.run_dir, max_message_bytes)

    @classmethod
    def for_run_dir(cls, run_dir: str | Path, max_message_bytes: int | None) -> Target:
        """A run dir, which need not exist yet (the daemon may come later)."""
        layout = RunDir(run_dir)
        limit = ipc.MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
        return cls(layout.path, layout.endpoints, limit)

    def not_running(self) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"no zskill daemon is running for {self.run_dir} (start it with `zskill up`)",
            run_dir=str(self.run_dir),
        )

    def no_answer(self, what: str, req_id: int) -> DaemonUnavailable:
        where = self.remote or self.run_dir
        return DaemonUnavailable(
            f"no answer from the daemon at {where} for {what} (req {req_id})",
            run_dir=str(self.run_dir),
        )

    def dropped(self, req_id: int) -> DaemonUnavailable:
        where = self.remote or self.run_dir
        return DaemonUnavailable(
            f"the connection to the daemon at {where} was dropped before req {req_id} was "
            "answered (a reply over max_message_bytes, or the daemon went away); "
            "it may or may not have run",
            run_dir=str(self.run_dir),
        )

    def unreachable(self, down_s: float) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"no connection to the daemon at {self.remote} for {down_s:.1f} s",
            run_dir=str(self.run_dir),
        )

    def setup(self, sock: Any) -> None:
        """Options for the control socket: size limit, queues, CurveZMQ, and
        for tcp:// ZMTP heartbeats (a silent host drops the connection)."""
        ipc.configure(sock, max_bytes=self.max_bytes)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        if self.curve is not None:
            self.curve.apply(sock)
        if self.remote:
            sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)

    def check_private(self) -> None:
        """Refuse (ConfigError) a socket directory another local user could
        have made: whoever owns it could read and answer every request."""
        if not self.remote:
            RunDir(self.run_dir).check_sockets_private()

    def daemon_alive(self) -> bool:
        """The control socket exists and the pid file names a live process.

        A cheap local check (a stat and a small read): it lets a client fail at
        once instead of queueing requests in ZeroMQ for a daemon that may
        never come.
        """
        if self.remote:
            return True  # nothing to look at locally: deadlines tell
        self.check_private()
        control = self.endpoints.paths()[0]
        if not control.exists():
            return False
        try:
            pid = int(RunDir(self.run_dir).pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return False
        return pid > 0 and psutil.pid_exists(pid)


def check_timeout(timeout_s: float, what: str = "timeout") -> float:
    """``timeout_s`` as a float, if it is a number of seconds a wait can last:
    positive and finite. Anything else raises InvalidArguments: a timeout of
    0 or less would give up at once (while the daemon, seeing no usable
    deadline, ran the call with its default), and NaN compares false with
    every deadline."""
    try:
        seconds = float(timeout_s)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(
            f"{what} must be a number of seconds, not {timeout_s!r}", timeout=repr(timeout_s)
        ) from exc
    if not 0.0 < seconds < math.inf:  # NaN fails this too
        raise InvalidArguments(
            f"{what} must be a positive, finite number of seconds, not {timeout_s!r}",
            timeout=repr(timeout_s),
        )
    return seconds


def check_wait(timeout_s: float | None) -> float | None:
    """As :func:`check_timeout`, with None (no limit) allowed."""
    return None if timeout_s is None else check_timeout(timeout_s)


def _check_size(frames: Frames, max_bytes: int) -> Frames:
    size = sum(map(len, frames))
    if size > max_bytes:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds the limit of {max_bytes}", size=size, limit=max_bytes
        )
    return frames


def call_frames(
    req_id: int,
    skill: str,
    tool: str,
    args: Mapping[str, Any] | None,
    timeout_s: float,
    max_bytes: int,
    key: str | None = None,
    traceparent: str | None = None,
    progress: bool = False,
    session: str | None = None,
) -> Frames:
    """Frames of a CallRequest; the arguments are encoded here, once.
    ``timeout_s`` must be positive and finite (InvalidArguments otherwise).
    ``key`` and ``traceparent`` are checked by :mod:`.keyed` (InvalidArguments);
    a traceparent of None is the current OpenTelemetry span's, if any."""
    if type(args) is not dict:
        if args is None:
            args = {}
        elif isinstance(args, Mapping):
            args = dict(args)
        else:
            raise InvalidArguments(
                f"arguments of {skill}.{tool} must be a mapping, not {type(args).__name__}",
                skill=skill,
                tool=tool,
            )
    if type(timeout_s) is not float or not 0.0 < timeout_s < math.inf:  # NaN fails this too
        timeout_s = check_timeout(timeout_s)  # the error, or an int or str made a float
    if key is not None:
        key = check_key(key)
        args = canonical(args)  # same arguments, same bytes, same digest
    traceparent = check_traceparent(traceparent)
    session = check_session(session)
    payload = ipc.encode_payload(args)
    msg = CallRequest(
        req_id, skill, tool, timeout_s, key, traceparent, progress, session, payload=payload
    )
    return _check_size(ipc.encode(msg), max_bytes)


def request_frames(req_id: int, op: str, args: Mapping[str, Any] | None, max_bytes: int) -> Frames:
    """Frames of a control Request."""
    if args is None:
        args = {}
    elif not isinstance(args, Mapping):
        raise InvalidArguments(f"arguments of {op!r} must be a mapping, not {type(args).__name__}")
    frames = ipc.encode(Request(req_id, op, dict(args)))
    return _check_size(frames, max_bytes)


def decode_reply(frames: Frames) -> Message | None:
    """A message from the control socket; None (logged) for frames that do not
    decode, which the client skips rather than fail a request it cannot name."""
    try:
        return ipc.decode(frames)
    except ZskillError as exc:
        _log.debug("ignoring an unreadable frame from the daemon: %s", exc)
        return None


def reply_id(msg: Message) -> int | None:
    """The req_id a message from the control socket answers, if any."""
    if isinstance(msg, (CallReply, Reply, ipc.Progress)):
        return msg.req_id
    if isinstance(msg, ipc.CallProgress):
        return msg.id
    return None


UPDATES = (ipc.Progress, ipc.CallProgress)
"""The messages that are not a request's final answer."""


def update_body(msg: Message) -> Any:
    """What a progress callback gets of an update: a control operation's
    body, or a call's :class:`~.progress.Progress`."""
    if isinstance(msg, ipc.CallProgress):
        return progress_of(msg)
    return msg.body if isinstance(msg, ipc.Progress) else None


def call_value(msg: Message) -> Any:
    """The result a call's final reply carries, or its error raised."""
    if type(msg) is CallReply and msg.error is None:
        return ipc.decode_payload(msg.payload)
    raise _failure(msg, "CallReply")


def call_result(msg: Message, elapsed_s: float) -> CallResult:
    """As :func:`call_value`, with who served the call and how long it took."""
    value = call_value(msg)
    assert isinstance(msg, CallReply)
    return CallResult(value, msg.version, elapsed_s)


def reply_body(msg: Message) -> Any:
    """The body of a control operation's final reply, or its error raised."""
    if isinstance(msg, Reply) and msg.error is None:
        return msg.body
    raise _failure(msg, "Reply")


def _failure(msg: Message, expected: str) -> ZskillError:
    # A daemon that cannot make sense of a request may answer it with the
    # other reply kind; its error still is the answer.
    error = getattr(msg, "error", None)
    if isinstance(error, ipc.WireError):
        return ipc.error_from_wire(error)
    return ProtocolError(f"expected a {expected}, the daemon sent a {type(msg).__name__}")


def event_from_frames(frames: Sequence[bytes]) -> Event | None:
    """An event published as ``[topic, header]`` (or a bare header); None for
    anything else, which a subscriber skips."""
    body = frames[1:] if len(frames) == 2 else frames
    try:
        msg = ipc.decode(body)
    except ZskillError:
        return None
    return msg if isinstance(msg, Event) else None


# --- control operations: arguments and the shape of their answers ------------


def skill_args(skill: str) -> dict[str, Any]:
    return {"skill": skill}


def optional_skill_args(skill: str | None) -> dict[str, Any]:
    return {} if skill is None else {"skill": skill}


def upgrade_args(skill: str, from_dir: str | Path | None, **options: Any) -> dict[str, Any]:
    """``options``: canary (a map), allow_breaking; those not given are left out."""
    args: dict[str, Any] = {"skill": skill}
    if from_dir is not None:
        # The daemon's cwd is not ours: send the directory as an absolute path.
        args["from"] = os.path.abspath(Path(from_dir).expanduser())
    args.update((k, v) for k, v in options.items() if v)
    return args


def events_args(skill: str | None, limit: int) -> dict[str, Any]:
    args: dict[str, Any] = {"limit": limit}
    if skill is not None:
        args["skill"] = skill
    return args


def expect_dict(body: Any, op: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{op}: expected a map from the daemon, got {type(body).__name__}")
    return body


def expect_list(body: Any, op: str) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise ProtocolError(f"{op}: expected a list from the daemon, got {type(body).__name__}")
    return body


def topic(skill: str | None) -> bytes:
    return b"" if skill is None else skill.encode()


def wants(event: Event, skill: str | None) -> bool:
    # SUB topics match by prefix: "mail" would also deliver "mailer"'s events.
    return skill is None or event.skill == skill
