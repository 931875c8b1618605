"""``Skill``: what a skill author writes against.

Decorating registers; it never wraps. The handler a decorator returns is the
author's own function, so their unit tests call it directly, without the SDK
in the way.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar, overload

import ipc
from ipc import Hello

from ._calls import CallRunner
from ._env import RuntimeEnv
from ._executors import AsyncWorker, ThreadWorkers
from ._exit import ExitCode
from ._health import HealthHook, HealthRunner
from ._hooks import Hook, Hooks, run_on_start, run_on_stop
from ._inline import InlineGuard
from ._log import log
from ._mailbox import Mailbox
from ._progress import ProgressOut
from ._runtime import Runtime
from ._state import StateRunner
from ._tool import Tool
from ._trace import CallTracing

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=HealthHook)
K = TypeVar("K", bound=Hook)

NOT_UNDER_DAEMON = (
    "this is a zskill skill; run it under the daemon: add it to zskill.toml and `zskill up`"
)


class Skill:
    """A skill: a name, a version, tools, and an optional health hook.

    ``concurrency`` is how many calls may run at once in this process when the
    daemon does not say (it does, from zskill.toml, through the environment).
    """

    def __init__(self, name: str, version: str = "0.0.0", *, concurrency: int | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError("a skill needs a non-empty name")
        if not isinstance(version, str):
            raise TypeError(f"version must be a string, got {type(version).__name__}")
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.name = name
        self.version = version
        self.concurrency = concurrency
        self._tools: dict[str, Tool] = {}
        self._health: HealthHook | None = None
        self._hooks = Hooks()
        # Set once the daemon welcomed this process (used by crash-test skills).
        self._welcomed = threading.Event()

    def __repr__(self) -> str:
        return f"Skill({self.name!r}, version={self.version!r}, tools={sorted(self._tools)})"

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        inline: bool = False,
        coerce: bool = False,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        inline: bool = False,
        coerce: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a tool: ``@skill.tool()`` or ``@skill.tool(idempotent=True)``.

        ``name`` defaults to the function's name, ``description`` to the first
        paragraph of its docstring. ``idempotent=True`` lets the daemon retry
        the call on another instance if this process dies while running it.
        Sync handlers run on a pool of ``concurrency`` threads, except that
        one which has taken under 100 us for its last 16 calls runs on the
        I/O thread, sparing two thread hand-offs per call; if it blocks there
        after all, another thread takes the I/O over within 20 ms and the tool
        goes back to the pool (see ``skills._inline``). ``inline=True`` runs
        it on the I/O thread from the first call and always.
        Arguments must be of the types the input schema says ("3" is not an
        integer); ``coerce=True`` converts them leniently instead ("3" -> 3)
        and marks the schema ``"x-zskill-coerce": true``.
        """

        def register(handler: F) -> F:
            tool = Tool(
                handler,
                name=name,
                description=description,
                idempotent=idempotent,
                inline=inline,
                coerce=coerce,
            )
            if tool.name in self._tools:
                raise ValueError(f"skill {self.name!r} already has a tool named {tool.name!r}")
            self._tools[tool.name] = tool
            return handler

        return register(fn) if fn is not None else register

    def health(self, fn: H) -> H:
        """Register the health hook (sync or async, no arguments). It returns
        True when healthy; False, or raising, means unhealthy."""
        if self._health is not None:
            raise ValueError(f"skill {self.name!r} already has a health hook")
        try:
            inspect.signature(fn).bind()
        except TypeError:
            raise TypeError("a health hook is called without arguments") from None
        except ValueError:
            pass  # no signature to read (some builtins): trust the author
        self._health = fn
        return fn

    @property
    def data_dir(self) -> Path:
        """Where this skill keeps state: the same directory for every version,
        restart and rollback (``ZSKILL_DATA_DIR``, set by the daemon). The
        code runs from a release copy; files written beside it are lost at
        the next upgrade. Outside the daemon (an author's own tests), a
        directory under the temp dir, unless ZSKILL_DATA_DIR is set."""
        raw = os.environ.get(ipc.ENV_DATA_DIR, "")
        path = Path(raw) if raw else Path(tempfile.gettempdir()) / f"zskill-data-{self.name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def on_start(self, fn: K) -> K:
        """Run ``fn()`` (sync or async) before this process says hello to the
        daemon: open what the tools need. If it raises, the start fails, with
        its traceback in the rollout's event. It must end within the skill's
        ``start_timeout_s``."""
        return self._hook("on_start", fn)

    def on_stop(self, fn: K) -> K:
        """Run ``fn()`` once the process has drained (its last call answered),
        before it exits: flush and close. It must end within ``grace_s``."""
        return self._hook("on_stop", fn)

    def export_state(self, fn: K) -> K:
        """``fn()`` returns this version's in-memory state (anything msgpack
        carries) for the next version's ``import_state``, in an upgrade. It
        runs when no call runs; it must not destroy the state: if the new
        version fails to import it, this one goes on serving."""
        return self._hook("export_state", fn)

    def import_state(self, fn: K) -> K:
        """``fn(state)`` or ``fn(state, from_version)`` takes over what the old
        version exported, before this version serves any call. If it raises,
        the upgrade is rolled back and the old version keeps serving."""
        return self._hook("import_state", fn)

    def _hook(self, kind: str, fn: K) -> K:
        if getattr(self._hooks, kind) is not None:
            raise ValueError(f"skill {self.name!r} already has a {kind} hook")
        if not callable(fn):
            raise TypeError(f"{kind} must be a function")
        setattr(self._hooks, kind, fn)
        return fn

    def run(self) -> NoReturn:
        """Serve this skill to the daemon that started this process, until it
        is drained; then exit (see ExitCode for the codes)."""
        if isinstance(sys.stdout, io.TextIOWrapper):
            # The daemon reads stdout through a pipe: without this, a handler's
            # print() would show up in the log only when a block fills.
            sys.stdout.reconfigure(line_buffering=True)
        env = RuntimeEnv.from_environ(
            concurrency=self.concurrency, default_instance=f"{self.name}-{os.getpid()}"
        )
        if env is None:
            print(f"{self.name}: {NOT_UNDER_DAEMON}", file=sys.stderr)
            raise SystemExit(ExitCode.NOT_UNDER_DAEMON)
        if env.skill and env.skill != self.name:
            log(f"this skill is named {self.name!r} but the daemon started it as {env.skill!r}")
        code = self._serve(env)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        raise SystemExit(int(code))

    def _hello(self, env: RuntimeEnv) -> Hello:
        return Hello(
            protocol=ipc.PROTOCOL_VERSION,
            skill=self.name,
            version=self.version,
            instance=env.instance,
            pid=os.getpid(),
            concurrency=env.concurrency,
            tools=[t.spec() for t in self._tools.values()],
            has_health=self._health is not None,
            secret=env.secret,
            exports_state=self._hooks.export_state is not None,
            imports_state=self._hooks.import_state is not None,
        )

    def _serve(self, env: RuntimeEnv) -> ExitCode:
        tools = self._tools.values()
        hook = self._health
        hook_is_async = hook is not None and inspect.iscoroutinefunction(hook)
        mailbox = Mailbox()
        needs_loop = hook_is_async or self._hooks.any_async() or any(t.is_async for t in tools)
        loop = AsyncWorker("zskill-async") if needs_loop else None
        threads = (
            ThreadWorkers(env.concurrency, "zskill-call")
            if any(not t.is_async for t in tools)
            else None
        )
        health_thread = ThreadWorkers(1, "zskill-health") if hook and not hook_is_async else None
        state = StateRunner(
            self._hooks, mailbox=mailbox, loop=loop, max_bytes=env.max_message_bytes
        )
        # Takes the loop over onto its standby thread if an inline handler blocks.
        guard = InlineGuard(lambda: runtime.take_over())
        runtime = Runtime(
            self._hello(env),
            env,
            calls=CallRunner(
                self.name,
                self._tools,
                concurrency=env.concurrency,
                max_bytes=env.max_message_bytes,
                mailbox=mailbox,
                threads=threads,
                loop=loop,
                guard=guard,
                tracing=CallTracing(self.name, self.version, env.instance),
                progress=ProgressOut(mailbox.wake),
            ),
            health=HealthRunner(hook, mailbox=mailbox, threads=health_thread, loop=loop),
            mailbox=mailbox,
            on_welcome=lambda _: self._welcomed.set(),
            state=state,
        )
        try:
            if not run_on_start(self._hooks, env, loop):
                return ExitCode.START_FAILED
            code = runtime.run()
            if code in (ExitCode.DRAINED, ExitCode.DAEMON_GONE):
                run_on_stop(self._hooks, loop)
            return code
        finally:
            guard.close()
            state.close()
            for executor in (threads, health_thread, loop):
                if executor is not None:
                    executor.close()
            mailbox.close()
