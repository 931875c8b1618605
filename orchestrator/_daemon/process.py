"""Skill processes at the OS level: spawn, signal a whole tree, reap.

Skills start as fresh interpreters (exec, never fork of the daemon: a ZeroMQ
context must not cross a fork) in a session of their own, so their process
group is theirs to signal. The daemon makes itself a child subreaper, so a
skill's grandchildren that outlive it are re-parented to the daemon, where
they can still be found and killed.

The instance's secret never enters a skill's environment (where any process
of the same user reads it, in ``/proc/PID/environ``, for as long as the skill
runs, and where every grandchild inherits it): it waits in a pipe whose read
end the child inherits, ``ZSKILL_SECRET_FD`` naming it, and the SDK reads it
once at start and closes it.

The supervisor reaches the OS only through :class:`Processes`; this module
is its implementation (pass the module itself), and unit tests pass a fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from ipc import ENV_SECRET

log = logging.getLogger("zskill.process")

_PR_SET_CHILD_SUBREAPER = 36
ENV_SECRET_FD = ENV_SECRET + "_FD"
"""The number of the inherited fd the secret is read from (skills._env reads it)."""


class Processes(Protocol):
    """What the daemon asks of the OS about skill processes."""

    def spawn(self, argv: list[str], cwd: Path, env: Mapping[str, str]) -> Child:
        """Start a skill process; ``env[ENV_SECRET]`` is for it alone (see :func:`spawn`)."""
        ...

    def signal_tree(self, child: Child, sig: signal.Signals) -> None: ...
    def tree_alive(self, child: Child) -> bool: ...
    def adopt_orphans(self, child: Child, instance: str, known: set[int]) -> None: ...
    def close_pipes(self, child: Child) -> None: ...
    def reap(self) -> Iterable[tuple[int, int]]: ...
    def become_subreaper(self) -> bool: ...


def become_subreaper() -> bool:
    """Orphaned descendants of our children get re-parented to us (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass(eq=False, slots=True)
class Child:
    """A spawned skill process: its pid, output pipes and what we know of its tree."""

    pid: int
    popen: subprocess.Popen[bytes] | None  # None for a fake in unit tests
    stdout_fd: int | None
    stderr_fd: int | None
    tree: set[int] = field(default_factory=set)
    exit_code: int | None = None  # as waitpid told: >= 0 exit status, < 0 signal

    @property
    def alive(self) -> bool:
        return self.exit_code is None

    def exited(self, code: int) -> None:
        """Record the exit status that ``reap`` collected."""
        self.exit_code = code
        if self.popen is not None:
            self.popen.returncode = code  # we reaped it; keep Popen from trying

    def describe_exit(self) -> str:
        code = self.exit_code
        if code is None:
            return "is running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"


def spawn(argv: list[str], cwd: Path, env: Mapping[str, str]) -> Child:
    """Start ``argv`` in ``cwd`` with ``env`` added to our environment, except
    ``env[ENV_SECRET]``: that goes through a pipe (see the module docstring).
    Raises OSError (e.g. FileNotFoundError) when it cannot start."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    secret = full_env.pop(ENV_SECRET, None)
    secret_fd = _secret_pipe(secret) if secret is not None else None
    if secret_fd is not None:
        full_env[ENV_SECRET_FD] = str(secret_fd)
    try:
        popen = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=() if secret_fd is None else (secret_fd,),
        )
    finally:
        if secret_fd is not None:
            os.close(secret_fd)  # the child has its copy; the pipe dies with it
    out = popen.stdout.fileno() if popen.stdout else None
    err = popen.stderr.fileno() if popen.stderr else None
    for fd in (out, err):
        if fd is not None:
            os.set_blocking(fd, False)
    return Child(popen.pid, popen, out, err, {popen.pid})


def _secret_pipe(secret: str) -> int:
    """A pipe holding ``secret``, its write end closed: the read end's fd.
    A secret is far smaller than a pipe's buffer, so the write never blocks."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, secret.encode())
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


def descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def signal_tree(child: Child, sig: signal.Signals) -> None:
    """Send ``sig`` to the child, its process group, and every descendant we
    have seen (a descendant may have left the group with setsid)."""
    if child.alive:
        child.tree |= descendants(child.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)
    for pid in list(child.tree):
        if pid == child.pid and not child.alive:
            continue  # reaped: the pid may already belong to someone else
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            if pid != child.pid:
                child.tree.discard(pid)
        except PermissionError:
            child.tree.discard(pid)


def adopt_orphans(child: Child, instance: str, known: set[int]) -> None:
    """Add to the child's tree the processes it left behind.

    Once a skill process is gone its descendants are re-parented to us (we
    are a subreaper), so they are our children that are not skill processes;
    the ``ZSKILL_INSTANCE`` they inherited in their environment says whose
    they were -- even for one that left the process group with setsid.
    """
    try:
        ours = psutil.Process().children()
    except psutil.Error:
        return
    for p in ours:
        if p.pid in known or p.pid in child.tree:
            continue
        try:
            if p.environ().get("ZSKILL_INSTANCE") != instance:
                continue
            child.tree.add(p.pid)
            child.tree.update(q.pid for q in p.children(recursive=True))
        except psutil.Error:
            continue


def tree_alive(child: Child) -> bool:
    """Whether any process of the child's tree still runs (zombies count as gone)."""
    if child.alive:
        return True
    for pid in list(child.tree):
        if pid == child.pid:
            continue
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
        child.tree.discard(pid)
    return False


def reap() -> Iterable[tuple[int, int]]:
    """Collect every exited child: (pid, code) with code < 0 for a signal."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            yield pid, -os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            yield pid, os.WEXITSTATUS(status)


def close_pipes(child: Child) -> None:
    if child.popen is None:
        return
    for f in (child.popen.stdout, child.popen.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
