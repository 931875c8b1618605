"""The idempotency keys' file: what keyed calls did, kept across a restart.

One append-only file in the run dir (``RunDir.idempotency_log``): a short
magic line, then records, each ``[u32 length][u32 crc32][msgpack body]``.
A body is ``[kind, skill, key, tool, digest, at, version, error, payload]``:

    START    the call went to a skill process (written before it is sent)
    DONE     its outcome: a result, or the error the skill answered
    UNKNOWN  its process died mid-call (OutcomeUnknown, for good)
    FORGET   it did not run after all; the key is free again

The last record of a (skill, key) says what it is; a START with nothing
after it, read at startup, is a call that was running when the daemon died:
its outcome is unknown. A record is one ``write``, so a daemon killed at any
instant leaves at worst a torn last record, which fails its length or crc
check and is cut off when the file is next read.

Only small writes happen on the daemon's thread. ``fsync`` (against a
machine crash; a killed daemon loses nothing the kernel already has; at
most one every ``SYNC_EVERY_S``) and compaction (the live records
rewritten to a new file, which then replaces the old one with a rename)
run as jobs (:mod:`.jobs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack

from ipc import WireError

from .jobs import Jobs

log = logging.getLogger("zskill.daemon")

MAGIC = b"ZSKEYS1\n"
_HEAD = struct.Struct("<II")
COMPACT_MIN_BYTES = 1 << 20
"""The file is rewritten once it is over this size and twice what is live."""
SYNC_EVERY_S = 0.1
"""At most one fsync this often: what a machine crash may lose, at worst."""


class RecordKind(IntEnum):
    START = 1
    DONE = 2
    UNKNOWN = 3
    FORGET = 4


@dataclass(frozen=True, slots=True)
class Record:
    kind: RecordKind
    skill: str
    key: str
    tool: str
    digest: bytes
    at: float  # wall-clock time the key was first used
    version: str = ""
    error: WireError | None = None
    payload: bytes = b""

    def encode(self) -> bytes:
        err = None if self.error is None else self.error.to_wire()
        body = msgpack.packb(
            [
                int(self.kind),
                self.skill,
                self.key,
                self.tool,
                self.digest,
                self.at,
                self.version,
                err,
                self.payload,
            ],
            use_bin_type=True,
        )
        return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _record(body: bytes) -> Record | None:
    try:
        raw = msgpack.unpackb(body, raw=False)
        kind, skill, key, tool, digest, at, version, err, payload = raw
        error = None if err is None else WireError(str(err[0]), str(err[1]), dict(err[2]))
        return Record(
            RecordKind(kind), skill, key, tool, bytes(digest), float(at), version, error, payload
        )
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException):
        return None


def decode_records(data: bytes) -> tuple[list[Record], int]:
    """The records of a file's contents, and how many bytes of it are
    whole: reading stops at the first record that is torn (shorter than
    its length says), fails its crc, or does not decode."""
    if not data.startswith(MAGIC):
        return [], 0
    out: list[Record] = []
    pos = len(MAGIC)
    while pos + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + size
        if end > len(data):
            break
        body = data[pos + _HEAD.size : end]
        if zlib.crc32(body) != crc:
            break
        rec = _record(body)
        if rec is None:
            break
        out.append(rec)
        pos = end
    return out, pos


def latest(records: Iterable[Record]) -> dict[tuple[str, str], Record]:
    """The last word on each (skill, key), in the order keys first appeared;
    a FORGET removes its key."""
    out: dict[tuple[str, str], Record] = {}
    for rec in records:
        ident = (rec.skill, rec.key)
        if rec.kind is RecordKind.FORGET:
            out.pop(ident, None)
        else:
            out[ident] = rec
    return out


class KeyStore:
    """The file, appended to on the daemon's thread; synced and compacted off it."""

    def __init__(self, path: Path, jobs: Jobs) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".new")
        self._jobs = jobs
        self._fd = -1
        self.size = 0  # bytes in the file
        self._syncing = False
        self._dirty = False  # written since the last fsync began
        self._last_sync = -SYNC_EVERY_S
        self._new_entry = True  # the directory entry is not synced yet
        self._compacting: list[bytes] | None = None  # appended while a rewrite runs
        self._closed = False

    # --- startup (before the loop serves) ----------------------------------------

    def load(self) -> list[Record]:
        """Read the file (cutting off a torn tail) and open it for appending;
        returns its records. A file that is not ours is set aside as
        ``.bad``, not read, and a new one begun."""
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()  # a rewrite the last daemon did not finish
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        records, whole = decode_records(data)
        if data and not data.startswith(MAGIC):
            bad = self.path.with_name(self.path.name + ".bad")
            log.warning("%s is not an idempotency key file; moved to %s", self.path, bad)
            os.replace(self.path, bad)
            data = b""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if not data:
            os.ftruncate(fd, 0)
            os.write(fd, MAGIC)
            whole = len(MAGIC)
        elif whole < len(data):
            log.warning(
                "%s: cut off %d bytes of a torn or damaged record at its end",
                self.path,
                len(data) - whole,
            )
            os.ftruncate(fd, whole)
        self._fd = fd
        self.size = whole
        return records

    # --- on the daemon's thread ----------------------------------------------------

    def append(self, record: bytes) -> None:
        """Write one record (one ``write``: a kill leaves it whole or torn).
        OSError (a full disk...) once the file is back as it was, so that
        later records never follow a torn one."""
        if self._fd < 0:
            return
        try:
            _write_all(self._fd, record)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(record)
        if self._compacting is not None:
            self._compacting.append(record)
        self._sync_soon()

    def wants_compaction(self, live_bytes: int) -> bool:
        """Whether the file has grown to over twice what is live in it."""
        return (
            self._compacting is None
            and self._fd >= 0
            and self.size >= COMPACT_MIN_BYTES
            and self.size >= 2 * (len(MAGIC) + live_bytes)
        )

    def compact(self, live: list[bytes]) -> None:
        """Rewrite the file with only ``live`` (each key's last record), off
        the daemon's thread; appends meanwhile go to both files."""
        self._compacting = []
        tmp = self._tmp

        def rewrite(cancelled: threading.Event) -> int:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, MAGIC)
                for rec in live:
                    if cancelled.is_set():
                        raise InterruptedError("the daemon is stopping")
                    _write_all(fd, rec)
                os.fsync(fd)
            finally:
                os.close(fd)
            return len(MAGIC) + sum(map(len, live))

        self._jobs.submit(rewrite, self._compacted)

    def _compacted(self, written: int | None, exc: BaseException | None) -> None:
        """On the daemon's thread: what was appended meanwhile goes to the new
        file too, which then takes the old one's place."""
        since, self._compacting = self._compacting or [], None
        if exc is not None or written is None or self._closed:
            if exc is not None and not isinstance(exc, InterruptedError):
                log.warning("rewriting %s failed: %s", self.path, exc)
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            return
        fd = -1
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_APPEND)
            for rec in since:
                _write_all(fd, rec)
                written += len(rec)
            os.replace(self._tmp, self.path)
        except OSError as err:
            log.warning("rewriting %s failed: %s", self.path, err)
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            return
        os.close(self._fd)
        self._fd = fd
        self.size = written
        log.info("rewrote %s: %d bytes", self.path, written)
        self._sync_soon()

    def _sync_soon(self) -> None:
        self._dirty = True
        self.flush(time.monotonic())

    def flush(self, now: float) -> None:
        """fsync off the daemon's thread, when due: something written since
        the last, none running, and at most one every SYNC_EVERY_S (a burst
        of calls costs a few fsyncs a second, not one each). The daemon's
        loop calls this as it goes (through KeyedCalls.expire)."""
        if not self._dirty or self._syncing or self._fd < 0 or now < self._last_sync + SYNC_EVERY_S:
            return
        self._syncing, self._dirty, self._last_sync = True, False, now
        fd = os.dup(self._fd)  # the file may be swapped while the job waits
        directory = str(self.path.parent) if self._new_entry else None
        self._new_entry = False

        def sync(cancelled: threading.Event) -> None:
            try:
                os.fsync(fd)
                if directory is not None:  # the file was made or renamed: its entry too
                    dfd = os.open(directory, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            finally:
                os.close(fd)

        self._jobs.submit(sync, self._synced)

    def _synced(self, _result: Any, exc: BaseException | None) -> None:
        self._syncing = False
        if exc is not None:
            log.warning("fsync of %s failed: %s", self.path, exc)

    def close(self) -> None:
        """At shutdown: what was written is synced here, once."""
        self._closed = True
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


__all__ = ["KeyStore", "Record", "RecordKind", "decode_records", "latest"]
