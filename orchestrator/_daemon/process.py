"""Skill processes at the OS level: spawn, signal a whole tree, reap.

Skills start as fresh interpreters (exec, never fork of the daemon: a ZeroMQ
context must not cross a fork) in a session of their own, so their process
group is theirs to signal. What a skill process starts must end with it, even
a grandchild that cleared its environment and left the session (setsid):

- where the daemon may make cgroups (cgroup v2, its own cgroup writable: root,
  or a delegated systemd unit; see :mod:`.cgroups`), each skill process gets one of its own,
  ``zskill-<daemon pid>-<instance>`` beside the daemon, which no descendant
  can leave. The child enters it right after spawn, while the new program is
  still starting (an interpreter needs milliseconds before it runs a line of
  the skill; a program that forked in its first instant could leave a child
  outside). Signals go to every member, SIGKILL by ``cgroup.kill``; the tree
  is gone when the cgroup is empty, and then the cgroup is removed. The
  first spawn also kills what is left in the cgroups of a daemon that died
  without stopping its skills.
- elsewhere the daemon is a child subreaper: a skill's descendants that
  outlive their parent are re-parented to it. When a skill process ends, the
  orphans that name its instance in their environment are its; so are those
  that name none and belong to no other tree. (A grandchild of another skill
  that cleared its environment and was orphaned is taken for this one's.)

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
import secrets
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from ipc import ENV_INSTANCE, ENV_SECRET, ENV_SECRET_FD

from . import cgroups

log = logging.getLogger("zskill.process")

_PR_SET_CHILD_SUBREAPER = 36
"""The number of the inherited fd the secret is read from (skills._env reads it)."""


class Processes(Protocol):
    """What the daemon asks of the OS about skill processes."""

    def spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str],
        memory_max_bytes: int | None = None,
    ) -> Child:
        """Start a skill process; ``env[ENV_SECRET]`` is for it alone (see :func:`spawn`)."""
        ...

    def signal_tree(self, child: Child, sig: signal.Signals) -> None: ...
    def tree_alive(self, child: Child) -> bool: ...
    def adopt_orphans(self, child: Child, instance: str, known: set[int]) -> None: ...
    def close_pipes(self, child: Child) -> None: ...
    def reap(self) -> Iterable[tuple[int, int]]: ...
    def become_subreaper(self) -> bool: ...
    def descends_from(self, pid: int, ancestor: int) -> bool: ...


def descends_from(pid: int, ancestor: int) -> bool:
    """``pid`` is ``ancestor``'s child, grandchild, ...: read from /proc,
    parent by parent (a bounded walk; False where /proc cannot tell)."""
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            # Field 4 is the parent pid; the command name (field 2) may hold
            # spaces and parentheses, so split after its closing ")".
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


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
    cgroup: Path | None = None  # the cgroup of its own, where the system allows one
    memory_cgroup: Path | None = None  # the one carrying the kernel's memory limit
    memory_max_bytes: int | None = None
    oom_killed: bool = False  # the kernel killed it for that limit

    @property
    def alive(self) -> bool:
        return self.exit_code is None

    def exited(self, code: int) -> None:
        """Record the exit status that ``reap`` collected."""
        self.exit_code = code
        if code == -signal.SIGKILL and self.memory_cgroup is not None:
            self.oom_killed = cgroups.oom_killed(self.memory_cgroup)
        if self.popen is not None:
            self.popen.returncode = code  # we reaped it; keep Popen from trying

    def describe_exit(self) -> str:
        code = self.exit_code
        if code is None:
            return "is running"
        if self.oom_killed and self.memory_max_bytes is not None:
            return (
                "was killed by the kernel: its tree used more than the memory backstop of "
                f"{self.memory_max_bytes >> 20} MiB (twice its memory_limit)"
            )
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"


def spawn(
    argv: list[str], cwd: Path, env: Mapping[str, str], memory_max_bytes: int | None = None
) -> Child:
    """Start ``argv`` in ``cwd`` with ``env`` added to our environment, except
    ``env[ENV_SECRET]``: that goes through a pipe (see the module docstring).
    ``memory_max_bytes``: the kernel's limit on the tree, where cgroups allow
    (:func:`.cgroups.limit_memory`). Raises OSError (e.g. FileNotFoundError)
    when it cannot start."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    secret = full_env.pop(ENV_SECRET, None)
    instance = env.get(ENV_INSTANCE, "")
    name = instance if cgroups.SAFE_NAME.fullmatch(instance) else secrets.token_hex(4)
    cgroup = cgroups.make(name)
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
    except BaseException:
        if cgroup is not None:
            cgroups.remove(cgroup)
        raise
    finally:
        if secret_fd is not None:
            os.close(secret_fd)  # the child has its copy; the pipe dies with it
    if cgroup is not None and not cgroups.enter(cgroup, popen.pid):
        cgroup = None
    memory = None
    if memory_max_bytes is not None:
        memory = cgroups.limit_memory(cgroup, name, popen.pid, memory_max_bytes)
    out = popen.stdout.fileno() if popen.stdout else None
    err = popen.stderr.fileno() if popen.stderr else None
    for fd in (out, err):
        if fd is not None:
            os.set_blocking(fd, False)
    child = Child(popen.pid, popen, out, err, {popen.pid}, cgroup=cgroup)
    if memory is not None:
        child.memory_cgroup, child.memory_max_bytes = memory, memory_max_bytes
    return child


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
    have seen (a descendant may have left the group with setsid); with a
    cgroup, to every process in it."""
    if child.cgroup is not None:
        cgroups.signal_all(child.cgroup, sig)
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
    are a subreaper), so they are our children that are not skill processes
    (nor in ``known``: the pids of every tree). The ``ZSKILL_INSTANCE`` they
    inherited says whose they were; without a cgroup, one that cleared its
    environment is taken to be the ending process's (see the module docstring).
    """
    try:
        ours = psutil.Process().children()
    except psutil.Error:
        return
    for p in ours:
        if p.pid in known or p.pid in child.tree:
            continue
        try:
            owner = p.environ().get(ENV_INSTANCE)
            if owner != instance and (owner is not None or child.cgroup is not None):
                continue
            child.tree.add(p.pid)
            child.tree.update(q.pid for q in p.children(recursive=True))
        except psutil.Error:
            continue


def tree_alive(child: Child) -> bool:
    """Whether any process of the child's tree still runs (zombies count as gone)."""
    if child.alive:
        return True
    if child.cgroup is not None:
        if cgroups.pids(child.cgroup):
            return True
        cgroups.remove(child.cgroup)
        child.cgroup = None
    for pid in list(child.tree):
        if pid == child.pid:
            continue
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
        child.tree.discard(pid)
    if child.memory_cgroup is not None:
        cgroups.remove(child.memory_cgroup)  # a v1 one of its own; gone with v2's above
        child.memory_cgroup = None
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
