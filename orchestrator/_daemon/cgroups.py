"""Cgroups for skill process trees, where the system allows them.

Two jobs, each done only where the daemon may write the cgroup file system
(root, or a delegated systemd unit); elsewhere :mod:`.process` falls back to
the subreaper, and ``memory_limit`` to RSS sampling alone (:mod:`.memory`).

- The tree: each skill process gets a cgroup v2 of its own,
  ``zskill-<daemon pid>-<instance>`` beside the daemon, which no descendant
  can leave. Signals go to every member, SIGKILL by ``cgroup.kill``.
- The memory backstop: a kernel limit on the tree's memory, above the
  skill's ``memory_limit`` (:func:`backstop_bytes`), so that a tree growing
  faster than the daemon samples is stopped by the kernel before it takes
  the machine, while a slower one is still replaced without a failed call
  (the sampling acts first). ``memory.max`` in the tree's own cgroup where
  the v2 memory controller reaches it; else ``memory.limit_in_bytes`` in a
  cgroup of the same name in the v1 memory hierarchy (hybrid systems).
  ``memory.oom.group`` (v2) makes the kernel kill the whole tree at once.

Cgroups of daemons that are gone (SIGKILLed, crashed) are emptied and removed
when the next daemon first looks for its root.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
from pathlib import Path

import psutil

log = logging.getLogger("zskill.cgroups")

PREFIX = "zskill-"
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_refused = False  # making one failed once: the subreaper alone from then on

BACKSTOP_MIN_MARGIN_BYTES = 64 << 20


def backstop_bytes(memory_limit: int) -> int:
    """The kernel's limit for a tree whose ``memory_limit`` is given: twice
    as much (at least 64 MiB more), room for the zero-downtime replacement
    that sampling starts at ``memory_limit`` to finish first."""
    return memory_limit + max(memory_limit, BACKSTOP_MIN_MARGIN_BYTES)


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fs type, super options) of each mounted cgroup fs."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts, tail = fields.split(), rest.split()
        if len(parts) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            out.append((parts[3], parts[4], tail[0], tail[2]))
    return out


def _own(controller: str) -> str | None:
    """Our path in a hierarchy: ``""`` for v2, else a v1 controller's name."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in (controllers.split(",") if controller else [controllers]):
            return path
    return None


def _writable_dir(mount_root: str, mount_point: str, own: str) -> Path | None:
    if mount_root != "/" and own != mount_root and not own.startswith(mount_root + "/"):
        return None
    relative = own[len(mount_root) :] if mount_root != "/" else own
    path = Path(mount_point) / relative.lstrip("/")
    if os.access(path, os.W_OK) and os.access(path / "cgroup.procs", os.W_OK):
        return path
    return None


@functools.cache
def root() -> Path | None:
    """The daemon's own cgroup v2 directory, if it may make cgroups there;
    None: no cgroup v2, or not ours to write. Found once; what daemons that
    are gone left in it is cleared then."""
    own = _own("")
    if own is None:
        return None
    for mount_root, point, fstype, _ in _mounts():
        if fstype == "cgroup2" and (path := _writable_dir(mount_root, point, own)):
            _clear_dead_daemons(path)
            return path
    return None


@functools.cache
def memory_v1_root() -> Path | None:
    """The daemon's own directory in a v1 memory hierarchy, if writable."""
    own = _own("memory")
    if own is None:
        return None
    for mount_root, point, fstype, opts in _mounts():
        if fstype == "cgroup" and "memory" in opts.split(","):
            for candidate in (own, "/"):  # a container may mount its own cgroup as the root
                if path := _writable_dir(mount_root, point, candidate):
                    _clear_dead_daemons(path)
                    return path
    return None


def _clear_dead_daemons(parent: Path) -> None:
    for path in parent.glob(PREFIX + "*"):
        try:
            pid = int(path.name[len(PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or psutil.pid_exists(pid):
            continue
        log.info("killing what is left in %s (daemon %d is gone)", path, pid)
        signal_all(path, signal.SIGKILL)
        with contextlib.suppress(OSError):
            path.rmdir()  # fails while its processes die: the next daemon removes it


def make(name: str) -> Path | None:
    """A new v2 cgroup for one skill process tree, or None where we may not."""
    global _refused
    parent = None if _refused else root()
    if parent is None:
        return None
    path = parent / f"{PREFIX}{os.getpid()}-{name}"
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        log.warning("cannot make cgroup %s (%s); skill trees rely on the subreaper", path, exc)
        _refused = True
        return None
    return path


def enter(path: Path, pid: int) -> bool:
    """Move ``pid`` into the cgroup; False (and the cgroup removed) if we cannot."""
    try:
        (path / "cgroup.procs").write_text(str(pid))
    except ProcessLookupError:
        return True  # exited already: the empty cgroup says its tree is gone
    except OSError as exc:
        log.warning("cannot move pid %d into %s: %s", pid, path, exc)
        remove(path)
        return False
    return True


def pids(path: Path) -> list[int]:
    """The processes in the cgroup (zombies have left it)."""
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def signal_all(path: Path, sig: signal.Signals) -> None:
    if sig is signal.SIGKILL:
        try:
            # Atomic (Linux 5.14+): a process forking right now is killed too.
            (path / "cgroup.kill").write_text("1")
            return
        except OSError:
            pass
    for pid in pids(path):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


# --- the memory backstop ---------------------------------------------------------


def can_limit_memory() -> bool:
    """Whether :func:`limit_memory` has a cgroup to put a limit in."""
    parent = root()
    if parent is not None:
        with contextlib.suppress(OSError):
            if "memory" in (parent / "cgroup.subtree_control").read_text().split():
                return True
    return memory_v1_root() is not None


def limit_memory(tree: Path | None, name: str, pid: int, max_bytes: int) -> Path | None:
    """Put the kernel's ``max_bytes`` limit on ``pid``'s tree (it has just
    started; its children inherit the cgroup). Returns the cgroup carrying the
    limit, or None where neither v2 nor v1 memory control is ours to use."""
    if tree is not None and (tree / "memory.max").exists():
        try:
            (tree / "memory.max").write_text(str(max_bytes))
            with contextlib.suppress(OSError):
                (tree / "memory.oom.group").write_text("1")
            with contextlib.suppress(OSError):
                (tree / "memory.swap.max").write_text("0")  # swap would only delay the stop
            return tree
        except OSError as exc:
            log.warning("cannot set memory.max in %s: %s", tree, exc)
    parent = memory_v1_root()
    if parent is None:
        return None
    path = parent / f"{PREFIX}{os.getpid()}-{name}"
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(max_bytes))
        if (path / "memory.memsw.limit_in_bytes").exists():  # swap would only delay the stop
            (path / "memory.memsw.limit_in_bytes").write_text(str(max_bytes))
        (path / "cgroup.procs").write_text(str(pid))
    except ProcessLookupError:
        return path
    except OSError as exc:
        log.warning("cannot limit memory in %s: %s; sampling alone enforces it", path, exc)
        remove(path)
        return None
    return path


def oom_killed(path: Path) -> bool:
    """Whether the kernel killed a process of the cgroup for its memory limit."""
    for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
        try:
            lines = (path / name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            field, _, value = line.partition(" ")
            if field == key and value.strip().isdigit():
                return int(value) > 0
    return False


__all__ = [
    "backstop_bytes",
    "can_limit_memory",
    "enter",
    "limit_memory",
    "make",
    "memory_v1_root",
    "oom_killed",
    "pids",
    "remove",
    "root",
    "signal_all",
]
