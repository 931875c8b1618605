"""The idempotency keys' file and book: records, a torn tail, compaction,
and the bounds, without a daemon."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_daemon_fakes import DeferredJobs

from ipc import WireError
from orchestrator._daemon import keystore
from orchestrator._daemon.jobs import InlineJobs
from orchestrator._daemon.keybook import KeyBook, KeyEntry, KeyLimits, KeyState
from orchestrator._daemon.keystore import (
    MAGIC,
    KeyStore,
    Record,
    RecordKind,
    decode_records,
    latest,
)


def rec(kind: RecordKind, key: str = "k", at: float = 1.0, payload: bytes = b"") -> Record:
    error = WireError("RemoteError", "boom", {"remote_type": "ValueError"})
    return Record(
        kind,
        "echo",
        key,
        "say",
        b"d" * 16,
        at,
        "1.0",
        error if kind is RecordKind.UNKNOWN else None,
        payload,
    )


def test_records_round_trip() -> None:
    records = [
        rec(RecordKind.START),
        rec(RecordKind.DONE, payload=b"\xa2ok"),
        rec(RecordKind.UNKNOWN),
    ]
    data = MAGIC + b"".join(r.encode() for r in records)
    assert decode_records(data) == (records, len(data))


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_torn_last_record_is_left_out_whatever_byte_the_kill_came_at(cut: int) -> None:
    whole = MAGIC + rec(RecordKind.START, "a").encode()
    last = rec(RecordKind.DONE, "a", payload=b"x" * 20).encode()
    torn = last[: len(last) - cut]
    records, good = decode_records(whole + torn)
    assert [r.key for r in records] == ["a"] and records[0].kind is RecordKind.START
    assert good == len(whole)


def test_a_damaged_record_ends_the_reading() -> None:
    first, second = rec(RecordKind.DONE, "a").encode(), rec(RecordKind.DONE, "b").encode()
    damaged = bytearray(second)
    damaged[-1] ^= 0xFF  # the crc no longer matches
    records, good = decode_records(MAGIC + first + bytes(damaged) + first)
    assert [r.key for r in records] == ["a"]
    assert good == len(MAGIC) + len(first)
    assert decode_records(b"not ours") == ([], 0)


def test_the_last_record_of_a_key_decides_and_forget_frees_it() -> None:
    records = [
        rec(RecordKind.START, "a"),
        rec(RecordKind.START, "b"),
        rec(RecordKind.DONE, "a"),
        rec(RecordKind.FORGET, "b"),
        rec(RecordKind.START, "c"),
    ]
    last = latest(records)
    assert {k: r.kind for (_, k), r in last.items()} == {
        "a": RecordKind.DONE,
        "c": RecordKind.START,
    }


def test_load_cuts_a_torn_tail_and_appends_after_the_last_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.log"
    path.write_bytes(MAGIC + rec(RecordKind.DONE, "a").encode() + b"\x05\x00\x00")
    store = KeyStore(path, InlineJobs())
    assert [r.key for r in store.load()] == ["a"]
    store.append(rec(RecordKind.DONE, "b").encode())
    store.close()
    again = KeyStore(path, InlineJobs())
    assert [r.key for r in again.load()] == ["a", "b"]
    again.close()


def test_a_file_that_is_not_ours_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.log"
    path.write_bytes(b"something else entirely")
    store = KeyStore(path, InlineJobs())
    assert store.load() == []
    store.close()
    assert (tmp_path / "idempotency.log.bad").read_bytes() == b"something else entirely"
    assert path.read_bytes() == MAGIC


def test_compaction_keeps_what_is_live_and_what_came_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keystore, "COMPACT_MIN_BYTES", 100)
    path = tmp_path / "idempotency.log"
    jobs = DeferredJobs()
    store = KeyStore(path, jobs)
    store.load()
    for n in range(20):
        store.append(rec(RecordKind.START, f"k{n}").encode())
    live = [rec(RecordKind.DONE, "k19").encode()]
    assert store.wants_compaction(len(live[0]))
    store.compact(live)
    assert not store.wants_compaction(len(live[0]))  # one at a time
    store.append(rec(RecordKind.DONE, "late").encode())  # while the rewrite runs
    while jobs.pending:
        jobs.run_next()
    assert not (tmp_path / "idempotency.log.new").exists()
    store.close()
    records, good = decode_records(path.read_bytes())
    assert [r.key for r in records] == ["k19", "late"]
    assert good == os.path.getsize(path) == store.size


def test_a_rewrite_cut_short_by_a_kill_is_removed_on_load(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.log"
    path.write_bytes(MAGIC + rec(RecordKind.DONE, "a").encode())
    (tmp_path / "idempotency.log.new").write_bytes(MAGIC + b"\x01")
    store = KeyStore(path, InlineJobs())
    assert [r.key for r in store.load()] == ["a"]
    store.close()
    assert not (tmp_path / "idempotency.log.new").exists()


def entry(key: str, at: float, state: KeyState = KeyState.DONE, size: int = 0) -> KeyEntry:
    e = KeyEntry("echo", key, "say", b"d", at, state, payload=b"x" * size)
    e.record = e.encode(RecordKind.DONE)
    return e


def test_the_book_evicts_the_oldest_finished_first_and_never_a_running_one() -> None:
    book = KeyBook(KeyLimits(max_keys=2, max_bytes=1 << 20, max_age_s=100.0))
    book.add(entry("running", 1.0, KeyState.RUNNING))
    for n, key in enumerate("abc"):
        book.add(entry(key, 2.0 + n))
    gone = book.evict(now=10.0)
    assert [e.key for e in gone] == ["a", "b"]
    assert list(k for _, k in book.entries) == ["running", "c"]
    # Past max_age_s, whatever the count.
    assert book.evict(now=104.0) == []  # c is 100 s old: not past it yet
    assert [e.key for e in book.evict(now=104.5)] == ["c"]


def test_the_book_holds_bytes_under_its_bound() -> None:
    book = KeyBook(KeyLimits(max_keys=100, max_bytes=3000, max_age_s=100.0))
    for n in range(5):
        book.add(entry(f"k{n}", float(n), size=1000))
    book.evict(now=5.0)
    assert [k for _, k in book.entries] == ["k3", "k4"]
    assert book.bytes == sum(len(e.record) for e in book.entries.values()) <= 3000


def test_restore_makes_a_call_running_at_the_daemon_s_death_unknown() -> None:
    book = KeyBook(KeyLimits(max_keys=100, max_bytes=1 << 20, max_age_s=100.0))
    book.restore(
        [
            rec(RecordKind.START, "was-running", at=1.0),
            rec(RecordKind.START, "done", at=2.0),
            rec(RecordKind.DONE, "done", at=2.0, payload=b"\xa2ok"),
            rec(RecordKind.UNKNOWN, "lost", at=3.0),
            rec(RecordKind.DONE, "too-old", at=-200.0),
        ],
        now=10.0,
    )
    states = {k: (e.state, e.error.type if e.error else None) for (_, k), e in book.entries.items()}
    assert states == {
        "was-running": (KeyState.UNKNOWN, "OutcomeUnknown"),
        "done": (KeyState.DONE, None),
        "lost": (KeyState.UNKNOWN, "RemoteError"),  # recorded as it was
    }
    assert book.get("echo", "done") is not None and book.get("echo", "done").payload == b"\xa2ok"  # type: ignore[union-attr]


def test_fsync_runs_off_the_loop_at_most_once_per_interval(tmp_path: Path) -> None:
    jobs = DeferredJobs()
    store = KeyStore(tmp_path / "idempotency.log", jobs)
    store.load()
    for n in range(5):  # a burst
        store.append(rec(RecordKind.DONE, f"k{n}").encode())
    assert len(jobs.pending) == 1  # the first write's, at once
    jobs.run_next()
    now = time.monotonic()
    store.flush(now)
    assert jobs.pending == []  # the rest waits for the interval
    store.flush(now + keystore.SYNC_EVERY_S)
    assert len(jobs.pending) == 1
    jobs.run_next()
    store.flush(now + 10 * keystore.SYNC_EVERY_S)
    assert jobs.pending == []  # nothing new written: nothing to sync
    store.close()
