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
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, overload

import ipc
from ipc import Hello

from ._calls import CallRunner
from ._env import RuntimeEnv
from ._executors import AsyncWorker, ThreadWorkers
from ._exit import ExitCode
from ._health import HealthHook, HealthRunner
from ._inline import InlineGuard
from ._log import log
from ._mailbox import Mailbox
from ._progress import ProgressOut
from ._runtime import Runtime
from ._tool import Tool
from ._trace import CallTracing

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=HealthHook)

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
        )

    def _serve(self, env: RuntimeEnv) -> ExitCode:
        tools = self._tools.values()
        hook = self._health
        hook_is_async = hook is not None and inspect.iscoroutinefunction(hook)
        mailbox = Mailbox()
        needs_loop = hook_is_async or any(t.is_async for t in tools)
        loop = AsyncWorker("zskill-async") if needs_loop else None
        threads = (
            ThreadWorkers(env.concurrency, "zskill-call")
            if any(not t.is_async for t in tools)
            else None
        )
        health_thread = ThreadWorkers(1, "zskill-health") if hook and not hook_is_async else None
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
        )
        try:
            return runtime.run()
        finally:
            guard.close()
            for executor in (threads, health_thread, loop):
                if executor is not None:
                    executor.close()
            mailbox.close()
