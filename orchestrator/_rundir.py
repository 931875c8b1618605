"""The run dir: every file and socket a daemon keeps, named in one place.

    <run_dir>/
      zskilld.pid            the daemon's pid, flock()ed while it runs
      events.jsonl           lifecycle and deployment history
      idempotency.log        outcomes of calls with an idempotency key
      logs/zskilld.log       the daemon's own log
      logs/zskilld.out       stdout and stderr of a detached daemon
      logs/SKILL.log         each skill's captured output (JSON lines)
      releases/SKILL/        kept releases, for rollback
      data/SKILL/            each skill's data_dir (unless zskill.toml puts it elsewhere)
      keys/                  CurveZMQ keys for tcp:// (see ``_curve``)
      control.sock           ROUTER  clients: calls and control operations
      workers.sock           ROUTER  skill processes
      events.sock            PUB     lifecycle and deployment events

ipc:// paths are limited to about 107 bytes (sun_path). When a run dir's
socket paths would be longer, the sockets go to a short directory,
``$TMPDIR/zskill-UID/HASH`` (``/tmp`` without ``TMPDIR``), whose name is a
hash of the run dir, so daemon and clients compute the same place from the
same run dir.

That directory is shared ground: another local user could create
``/tmp/zskill-UID`` first and put their own ``control.sock`` in it, to read
every call a client sends. So both the daemon and its clients use a socket
directory only after checking every component they rely on
(:meth:`RunDir.make_private`, :meth:`RunDir.check_sockets_private`): a
real directory, not a symbolic link, owned by this user, with no access for
group or others. Anything else is refused with an error that says which path
and why.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ipc import ConfigError, Endpoints

_SUN_PATH_MAX = 107
_SOCKETS = ("control.sock", "workers.sock", "events.sock")


@dataclass(frozen=True, slots=True)
class RunDir:
    """A run dir's layout. ``path`` is made absolute; nothing is created."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(os.path.abspath(Path(path).expanduser())))

    # --- files -------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.path / "zskilld.pid"

    def daemon_running(self) -> bool:
        """Whether a daemon holds this run dir (its pid file's lock), without
        connecting: an unlocked or missing pid file says none runs."""
        try:
            fd = os.open(self.pid_file, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing drops a lock we took
        return False

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def idempotency_log(self) -> Path:
        return self.path / "idempotency.log"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "zskilld.log"

    @property
    def detached_output(self) -> Path:
        return self.logs / "zskilld.out"

    def skill_log(self, skill: str) -> Path:
        return self.logs / f"{skill}.log"

    @property
    def releases(self) -> Path:
        return self.path / "releases"

    @property
    def data(self) -> Path:
        return self.path / "data"

    def skill_data(self, skill: str) -> Path:
        """A skill's default data_dir: state that outlives its releases."""
        return self.data / skill

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    @property
    def client_keys(self) -> Path:
        return self.keys / "clients"

    @property
    def server_secret_key(self) -> Path:
        return self.keys / "server.key_secret"

    # --- sockets -----------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """Where the ipc:// sockets live: the run dir itself, or a short
        directory under /tmp when the run dir's path is too long for them."""
        longest = max(_SOCKETS, key=len)
        if len(str(self.path / longest)) <= _SUN_PATH_MAX:
            return self.path
        digest = hashlib.sha256(str(self.path).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"zskill-{os.getuid()}" / digest

    @property
    def endpoints(self) -> Endpoints:
        d = self.socket_dir
        control, workers, events = (f"ipc://{d / name}" for name in _SOCKETS)
        return Endpoints(control=control, workers=workers, events=events)

    def make_private(self) -> Path:
        """For the daemon: make the run dir and the socket dir (mode 0700)
        where missing, close them to others where they are ours but open, and
        refuse (ConfigError naming the path and why) where they are not ours,
        not directories, or symbolic links. Returns the socket dir."""
        sdir = self.socket_dir
        uid = os.getuid()
        # Under $TMPDIR the per-user directory and the per-run-dir one below
        # it are shared ground; the run dir is the user's own choice.
        parts = [self.path] if sdir == self.path else [self.path, sdir.parent, sdir]
        for part in parts:
            try:
                part.mkdir(mode=0o700, parents=part == self.path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ConfigError(f"cannot create {part}: {exc.strerror}") from exc
            # The run dir may be a symbolic link of the user's own making.
            problem = _not_private(part, uid, follow=part == self.path)
            if problem is not None and problem.startswith("has mode"):
                # Ours, but open to others: close it. Whatever another user
                # may have left inside is checked next (the directory below)
                # or removed by the daemon once it holds the run dir's lock.
                os.chmod(part, 0o700)
                problem = _not_private(part, uid, follow=part == self.path)
            if problem is not None:
                raise ConfigError(_refusal(part, problem, sockets=part != self.path))
        return sdir

    def check_sockets_private(self) -> None:
        """For a client, before it sends anything: the socket dir must be
        this user's, and nobody else may write in it, or another user could
        put their own socket there to read and answer every call.
        Raises ConfigError naming the path and why. A missing directory is
        no error: no daemon has made it yet, and nobody answers there."""
        sdir = self.socket_dir
        uid = os.getuid()
        for part in [sdir] if sdir == self.path else [sdir.parent, sdir]:
            problem = _not_private(part, uid, follow=part == self.path, open_bits=0o022)
            if problem == "missing":
                return
            if problem is not None:
                raise ConfigError(_refusal(part, problem, sockets=True))


def _refusal(path: Path, problem: str, *, sockets: bool) -> str:
    if not sockets:
        return f"cannot use {path} as the run dir: it {problem}"
    if problem in ("is not a directory",) or problem.startswith("cannot be examined"):
        return f"cannot use {path} for zskill's sockets: it {problem}"
    return (
        f"refusing to use {path} for zskill's sockets: it {problem}. Another user could "
        "read or answer every call through it; remove it (or fix its owner and mode) "
        "and try again"
    )


def _not_private(
    path: Path, uid: int, *, follow: bool = False, open_bits: int = 0o077
) -> str | None:
    """Why ``path`` is not a directory private to ``uid``, or None if it is.
    ``open_bits``: the mode bits nobody but the owner may have (a client
    needs only that nobody else can write: create, rename or remove a socket)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not to this user (uid {uid})"
    if st.st_mode & open_bits:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}: group or others have access (want 0700)"
    return None


__all__ = ["RunDir"]
