#!/usr/bin/env python3
"""Soak: many calls while skills are killed, hung, upgraded and stopped at random.

Every call carries a text of its own and its tool answers that text, so an
answer is checked against its request: a result other than the call's own
text is *wrong*, a second reply to one request *answered twice*, no reply
within the call's deadline plus a margin *never answered*. Failures the
delivery semantics allow (``OutcomeUnknown`` for a call running in a killed
process, ``CallTimeout``, ``SkillUnavailable`` while a skill is stopped) are
counted by kind.

Two modes:

- default: ``--calls`` ``echo.say`` calls from raw DEALER sockets while a
  chaos thread, every ``--chaos-s`` or so, SIGKILLs or SIGSTOPs (for good) a
  skill process, upgrades ``echo`` between two releases, or restarts it.
- ``--chaos``: ``--seconds`` of calls from raw DEALER sockets and from
  threads sharing one :class:`orchestrator.Client`, to two skills (``echo``
  and ``mirror``, both echo with two extra tools, ``note`` and the idempotent
  ``note_idem``, that append their text to a file per process: the skill
  side's record of what ran). The chaos thread also SIGSTOPs a process for
  a while and SIGCONTs it, upgrades in place and ``--from`` a variant, tries
  every broken release in ``skills/examples/broken`` (each must roll back),
  stops a skill and starts it again, and rolls back. Scale and cancel come
  with instances and cancellation (future issues); the output says so.

Raw sockets see every reply frame, so a duplicate reply shows directly; the
skill side's record shows a non-idempotent call that ran twice, an ``ok``
that never ran, and a refused call (``SkillUnavailable``...) that ran
anyway. Exits 1 unless never answered, answered twice and wrong are all 0,
no broken release was deployed and the daemon's RSS grew at most 10% after
warm-up. Bounded in time; loopback only; every process it starts (the
daemon, and through it the skills) is gone, by pid, when it ends.

Why this module is long: a script run by hand, whose callers, chaos, checks
and report are one story; in one file, the run recorded in the README is
one file to read.

    .venv/bin/python scripts/soak.py [--calls 1000000] [--callers 8] [--seed 1]
    .venv/bin/python scripts/soak.py --chaos [--seconds 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import zmq
from _harness import EXAMPLES, LocalDaemon, release, skill_table

import ipc
from orchestrator import CallError, Client, DaemonUnavailable, ZskillError
from orchestrator._rundir import RunDir

# The daemon answers by a call's deadline; this is the margin for the trip back.
MARGIN_S = 5.0
# Outcomes that say the call did not run (so the skill side must not have run it).
REFUSED = {"SkillUnavailable", "SkillOverloaded", "SkillNotFound", "ToolNotFound"}
IDEMPOTENT_TOOLS = {"note_idem"}

# Added to echo's main.py in --chaos mode: the skill side's record of each
# call that ran, one line per call, appended (atomically, O_APPEND) to a file
# named for the process.
NOTE_TOOLS = """
import time as _soak_time

_SOAK_FD = os.open(
    os.path.join({notes!r}, f"{{os.getpid()}}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
)


def _soak_note(text: str, ms: float) -> str:
    _soak_time.sleep(ms / 1000)
    os.write(_SOAK_FD, text.encode() + b"\\n")
    return text


@skill.tool()
def note(text: str, ms: float = 0) -> str:
    \"\"\"Record text in this process's file after ms; return it.\"\"\"
    return _soak_note(text, ms)


@skill.tool(idempotent=True)
def note_idem(text: str, ms: float = 0) -> str:
    \"\"\"Like note, declared safe to retry.\"\"\"
    return _soak_note(text, ms)


"""


class Tally:
    """One caller's count: calls sent, answers by kind, and the three that must be 0."""

    def __init__(self) -> None:
        self.sent = 0
        self.kinds: Counter[str] = Counter()
        self.never = 0
        self.twice = 0
        self.wrong = 0
        self.tool: dict[str, str] = {}  # text -> the tool called with it
        self.outcome: dict[str, str] = {}  # text -> kind of its answer

    def send(self, text: str, tool: str) -> None:
        self.sent += 1
        self.tool[text] = tool

    def answer(self, text: str, kind: str, result: object, late: bool) -> None:
        if late:  # the caller had given up by then: never answered, as far as it knows
            kind = "never answered"
        self.kinds[kind] += 1
        self.outcome[text] = kind
        if kind == "never answered":
            self.never += 1
        elif kind == "ok" and result != text:
            self.wrong += 1


def plan(rng: random.Random, text: str, chaos: bool) -> tuple[str, str, dict[str, object]]:
    """A call's skill, tool and arguments; each tool answers ``text``."""
    if not chaos:
        return "echo", "say", {"text": text}
    skill = rng.choice(["echo", "mirror"])
    tool = rng.choice(["say", "note", "note", "note_idem"])
    if tool == "say":
        return skill, tool, {"text": text}
    # A few calls hold a worker thread a while, so a kill finds calls in flight.
    return skill, tool, {"text": text, "ms": 200 if rng.random() < 0.02 else 0}


class RawCaller(threading.Thread):
    """Keeps ``window`` calls in flight on one DEALER until ``calls`` are sent
    or ``stop`` is set, then waits for the answers; sees every reply frame."""

    def __init__(
        self, n: int, endpoint: str, calls: int, window: int, timeout_s: float, chaos: bool
    ) -> None:
        super().__init__(daemon=True)
        self.n, self.endpoint, self.calls, self.window = n, endpoint, calls, window
        self.timeout_s, self.chaos = timeout_s, chaos
        self.stop = threading.Event()
        self.tally = Tally()
        self.rng = random.Random(n)
        self.texts: dict[int, str] = {}
        self.pending: dict[int, float] = {}  # req id -> when this caller gives up on it
        self.replies: Counter[int] = Counter()  # req id -> reply frames seen

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        t = self.tally
        try:
            while True:
                while (
                    not self.stop.is_set()
                    and t.sent < self.calls
                    and len(self.pending) < self.window
                ):
                    req, text = t.sent, f"r{self.n}-{t.sent}"
                    skill, tool, args = plan(self.rng, text, self.chaos)
                    call = ipc.CallRequest(
                        req, skill, tool, self.timeout_s, payload=ipc.encode_payload(args)
                    )
                    sock.send_multipart(ipc.encode(call))
                    self.texts[req] = text
                    self.pending[req] = time.monotonic() + self.timeout_s + MARGIN_S
                    t.send(text, tool)
                sending = not self.stop.is_set() and t.sent < self.calls
                if not sending and (
                    not self.pending or time.monotonic() > max(self.pending.values())
                ):
                    break  # all answered, or the rest never will be
                if sock.poll(200):
                    self._receive(sock)
            for req in self.pending:
                t.answer(self.texts[req], "never answered", None, False)
            self.pending.clear()
            # A late or second reply would arrive now, if the daemon ever sent one.
            deadline = time.monotonic() + 1.0
            while (left_s := deadline - time.monotonic()) > 0:
                if sock.poll(int(left_s * 1000) + 1):
                    self._receive(sock)
        finally:
            sock.close()

    def _receive(self, sock: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply = ipc.decode(frames)
            if not isinstance(reply, ipc.CallReply) or reply.req_id not in self.texts:
                self.tally.wrong += 1  # an answer to nothing this caller asked
                continue
            self.replies[reply.req_id] += 1
            if self.replies[reply.req_id] > 1:
                self.tally.twice += 1
                continue
            give_up = self.pending.pop(reply.req_id, None)
            if give_up is None:
                continue  # a first reply after this caller gave up: counted never answered
            text = self.texts[reply.req_id]
            late = time.monotonic() > give_up
            if reply.error is None:
                self.tally.answer(text, "ok", ipc.decode_payload(reply.payload), late)
            else:
                self.tally.answer(text, reply.error.type, None, late)


class ClientCaller(threading.Thread):
    """Calls one at a time through a shared Client until ``stop`` is set."""

    def __init__(self, n: int, client: Client, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.n, self.client, self.timeout_s = n, client, timeout_s
        self.stop = threading.Event()
        self.tally = Tally()
        self.rng = random.Random(1000 + n)

    def run(self) -> None:
        t = self.tally
        while not self.stop.is_set():
            text = f"c{self.n}-{t.sent}"
            skill, tool, args = plan(self.rng, text, True)
            t.send(text, tool)
            started = time.monotonic()
            result: object = None
            try:
                result = self.client.call(skill, tool, args, timeout=self.timeout_s)
                kind = "ok"
            except DaemonUnavailable:
                kind = "never answered"  # the Client gave up: no answer by deadline + margin
            except CallError as exc:
                kind = type(exc).__name__
            late = time.monotonic() - started > self.timeout_s + MARGIN_S
            t.answer(text, kind, result, late)


class Chaos(threading.Thread):
    """Every ``every_s`` or so, one action picked at random from ``actions``;
    counts each action with its outcome."""

    def __init__(
        self,
        client: Client,
        rng: random.Random,
        every_s: float,
        actions: list[str],
        targets: list[str],
        variants: list[Path],
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.rng, self.every_s = client, rng, every_s
        self.actions, self.targets, self.variants = actions, targets, variants
        self.broken = sorted(p for p in (EXAMPLES / "broken").iterdir() if p.is_dir())
        self.stop = threading.Event()
        self.log: Counter[str] = Counter()
        self.why: dict[str, str] = {}  # the first error of each failed action
        self.broken_deployed = 0
        self.rolled_back: set[str] = set()
        self._turn = 0

    def run(self) -> None:
        while not self.stop.wait(self.every_s * (0.5 + self.rng.random())):
            action = self.rng.choice(self.actions)
            try:
                outcome = getattr(self, f"_{action}")(self.rng.choice(self.targets))
            except (ZskillError, psutil.Error) as exc:
                outcome = type(exc).__name__
                self.why.setdefault(f"{action} ({outcome})", str(exc))
            self._turn += 1
            self.log[f"{action} ({outcome})" if outcome else action] += 1

    def _process(self, skill: str) -> psutil.Process | None:
        # psutil.Process remembers the start time: a signal never reaches a reused pid.
        pid = {s["name"]: s["pid"] for s in self.client.list()}.get(skill)
        return psutil.Process(pid) if pid else None

    def _kill(self, skill: str) -> str:
        p = self._process(skill)
        if p is None:
            return "no process"
        p.send_signal(signal.SIGKILL)
        return ""

    def _hang(self, skill: str) -> str:
        """SIGSTOP for good: the daemon's liveness check must kill and replace it."""
        p = self._process(skill)
        if p is None:
            return "no process"
        p.suspend()
        return ""

    def _pause(self, skill: str) -> str:
        """SIGSTOP, then SIGCONT a while later: shorter than liveness_s it
        resumes; longer, the daemon has killed it by then."""
        p = self._process(skill)
        if p is None:
            return "no process"
        p.suspend()
        try:
            time.sleep(self.rng.uniform(0.2, 3.0))
        finally:
            try:
                p.resume()
            except psutil.NoSuchProcess:
                return "killed by the daemon meanwhile"
        return "resumed"

    def _upgrade(self, _skill: str) -> str:
        self.client.upgrade("echo")  # in place: a new release of the configured path
        return "deployed"

    def _upgrade_from(self, _skill: str) -> str:
        self.client.upgrade("echo", self.variants[self._turn % len(self.variants)])
        return "deployed"

    def _broken_upgrade(self, _skill: str) -> str:
        """Each of skills/examples/broken in turn: every one must roll back."""
        broken = self.broken[self.log["broken_upgrade (rolled back)"] % len(self.broken)]
        try:
            self.client.upgrade("echo", broken)
        except ipc.UpgradeFailed:
            self.rolled_back.add(broken.name)
            return "rolled back"
        self.broken_deployed += 1
        return f"DEPLOYED {broken.name}"

    def _restart(self, skill: str) -> str:
        self.client.restart(skill)
        return ""

    def _rollback(self, _skill: str) -> str:
        self.client.rollback("echo")
        return "deployed"

    def _stop_start(self, skill: str) -> str:
        """Calls in the window must be answered SkillUnavailable."""
        self.client.stop(skill)
        try:
            time.sleep(self.rng.uniform(0.2, 1.5))
        finally:
            self.client.start(skill)
        return ""

    # Not yet, and the output says so: "scale" (change a skill's number of
    # instances) comes with instances, "cancel" (cancel calls in flight and
    # count them as Cancelled) with cancellation -- both future issues. Each
    # becomes a method here and a name in CHAOS.


CHAOS = ["kill", "pause", "upgrade", "upgrade_from", "broken_upgrade", "restart", "stop_start"]
# Weighted so a two-minute run tries each of the nine broken releases.
CHAOS += ["kill", "pause", "broken_upgrade", "broken_upgrade", "rollback"]
BASIC = ["kill", "kill", "hang", "upgrade_from", "upgrade_from", "restart"]
FUTURE = ["scale", "cancel"]


def check_notes(notes: Path, tallies: list[Tally]) -> tuple[Counter[str], int, int]:
    """The skill side's record against the answers: (counts, ran twice, wrong)."""
    ran: Counter[str] = Counter()
    for f in notes.glob("*.log"):
        ran.update(f.read_text().split())
    tool: dict[str, str] = {}
    outcome: dict[str, str] = {}
    for t in tallies:
        tool.update(t.tool)
        outcome.update(t.outcome)
    counts: Counter[str] = Counter()
    counts["notes written"] = sum(ran.values())
    twice = wrong = 0
    for text, n in ran.items():
        kind = outcome.get(text)
        if text not in tool:
            counts["ran, never sent"] += 1
        elif kind in REFUSED:
            counts[f"ran, answered {kind}"] += 1
        elif n > 1 and tool[text] in IDEMPOTENT_TOOLS:
            counts["idempotent, ran again after a kill (allowed)"] += 1
            continue
        elif n > 1:
            counts["non-idempotent, ran twice"] += 1
            twice += 1
            continue
        else:
            continue
        wrong += 1
    for text, kind in outcome.items():
        if kind == "ok" and tool[text] != "say" and ran[text] == 0:
            counts["answered ok, never ran"] += 1
            wrong += 1
    return counts, twice, wrong


def config(work: Path, chaos: bool) -> tuple[str, list[Path]]:
    """The daemon's config, and the releases of echo to upgrade to."""
    keys = {
        "concurrency": 8,
        "grace_s": 2,
        "kill_timeout_s": 1,
        "backoff_s": 0.05,
        "max_restarts": 1000,
        "start_timeout_s": 8,
        "health_timeout_s": 2,
    }
    daemon = "[daemon]\nheartbeat_s = 0.2\nliveness_s = 1.5\n\n"
    if not chaos:
        variants = [release(work, "echo", v) for v in ("2.0.0", "3.0.0")]
        return daemon + skill_table("echo", **keys) + skill_table("clock", **keys), variants
    notes = work / "notes"
    notes.mkdir()
    extra = NOTE_TOOLS.format(notes=str(notes))
    echo = release(work, "echo", "1.0.0", extra)
    mirror = release(work, "echo", "1.0.0-mirror", extra, {'Skill("echo"': 'Skill("mirror"'})
    variants = [release(work, "echo", v, extra) for v in ("2.0.0", "3.0.0")]
    text = daemon + skill_table("echo", echo, **keys) + skill_table("mirror", mirror, **keys)
    return text, variants


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chaos", action="store_true", help="every kind of chaos, for --seconds")
    ap.add_argument("--seconds", type=float, default=60.0, help="--chaos: how long to call")
    ap.add_argument("--calls", type=int, default=1_000_000, help="default mode: calls to send")
    ap.add_argument("--callers", type=int, default=8, help="raw-socket callers")
    ap.add_argument("--client-callers", type=int, default=4, help="--chaos: Client threads")
    ap.add_argument("--window", type=int, default=4, help="calls in flight per raw caller")
    ap.add_argument("--chaos-s", type=float, default=1.0, help="mean seconds between actions")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="each call's deadline")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zc", dir="/tmp"))
    try:
        return soak(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def soak(args: argparse.Namespace, work: Path) -> int:
    text, variants = config(work, args.chaos)
    calls = args.calls // args.callers if not args.chaos else 2**62
    with LocalDaemon(text, prefix="zk") as d:
        daemon = psutil.Process(d.client.ping()["pid"])
        rss_before = daemon.memory_info().rss
        endpoint = RunDir(d.root / ".zskill").endpoints.control
        callers: list[RawCaller | ClientCaller] = [
            RawCaller(i, endpoint, calls, args.window, args.timeout_s, args.chaos)
            for i in range(args.callers)
        ]
        shared = Client(d.config)
        if args.chaos:
            callers += [ClientCaller(i, shared, args.timeout_s) for i in range(args.client_callers)]
        targets = ["echo", "mirror"] if args.chaos else ["echo", "clock"]
        chaos = Chaos(
            d.client,
            random.Random(args.seed),
            args.chaos_s,
            CHAOS if args.chaos else BASIC,
            targets,
            variants,
        )
        t0 = time.monotonic()
        for c in callers:
            c.start()
        # Warm up: the daemon's buffers and caches at their working size first.
        while time.monotonic() - t0 < (min(10.0, args.seconds / 10) if args.chaos else 600):
            if sum(c.tally.sent for c in callers) >= args.calls // 20 and not args.chaos:
                break
            time.sleep(0.2)
        rss_warm = daemon.memory_info().rss
        chaos.start()
        last_report = time.monotonic()
        while any(c.is_alive() for c in callers):
            if args.chaos and time.monotonic() - t0 >= args.seconds:
                for c in callers:
                    c.stop.set()
                chaos.stop.set()
            time.sleep(0.2)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                sent = sum(c.tally.sent for c in callers)
                print(f"  {sent} calls sent, {time.monotonic() - t0:.0f} s", flush=True)
        elapsed = time.monotonic() - t0
        chaos.stop.set()
        chaos.join(60)
        shared.close()
        rss_end = daemon.memory_info().rss
    # The daemon is gone, and with it every skill process: the record is complete.
    tallies = [c.tally for c in callers]
    notes = Counter[str]()
    ran_twice = ran_wrong = 0
    if args.chaos:
        notes, ran_twice, ran_wrong = check_notes(work / "notes", tallies)
    return report(
        args, elapsed, tallies, chaos, notes, ran_twice, ran_wrong, (rss_before, rss_warm, rss_end)
    )


def report(
    args: argparse.Namespace,
    elapsed_s: float,
    tallies: list[Tally],
    chaos: Chaos,
    notes: Counter[str],
    ran_twice: int,
    ran_wrong: int,
    rss: tuple[int, int, int],
) -> int:
    kinds: Counter[str] = Counter()
    for t in tallies:
        kinds.update(t.kinds)
    sent = sum(t.sent for t in tallies)
    never = sum(t.never for t in tallies)
    dup_replies = sum(t.twice for t in tallies)
    wrong_results = sum(t.wrong for t in tallies)
    twice, wrong = dup_replies + ran_twice, wrong_results + ran_wrong
    rss_before, rss_warm, rss_end = rss
    growth = (rss_end - rss_warm) / rss_warm
    who = f"{args.callers} raw-socket callers"
    if args.chaos:
        who += f" + {args.client_callers} threads on one Client"
    mode = "--chaos" if args.chaos else "soak"
    print(f"{mode}: {elapsed_s:.0f} s, {who}, {sent / elapsed_s:.0f} calls/s, seed {args.seed}")
    rows = [("calls sent", sent)]
    rows += [("answered", sum(n for k, n in kinds.items() if k != "never answered"))]
    rows += [(f"  {k}", n) for k, n in kinds.most_common() if k != "never answered"]
    rows += [("never answered", never)]
    rows += [(f"answered twice ({dup_replies} second replies, {ran_twice} ran twice)", twice)]
    rows += [(f"wrong ({wrong_results} wrong results, {ran_wrong} skill-side)", wrong)]
    width = max(len(label) for label, _ in rows) + 2
    for label, n in rows:
        print(f"{label:<{width}}{n:>10}")
    if args.chaos:
        print("skill side: " + ", ".join(f"{k} {v}" for k, v in notes.items()))
    print(f"chaos ({sum(chaos.log.values())} actions):")
    for action, n in sorted(chaos.log.items()):
        print(f"  {action:<{width - 2}}{n:>10}")
    if chaos.rolled_back:
        print(f"  rolled back: {', '.join(sorted(chaos.rolled_back))}")
    for action, message in sorted(chaos.why.items()):
        print(f"  first {action}: {message}")
    if args.chaos:
        print(f"not yet: {', '.join(FUTURE)} (instances and cancellation: future issues)")
    print(
        f"daemon RSS: before {mib(rss_before)}, after warm-up {mib(rss_warm)}, "
        f"after {mib(rss_end)} ({growth * 100:+.1f}% since warm-up)"
    )
    ok = never == 0 and twice == 0 and wrong == 0 and chaos.broken_deployed == 0
    ok = ok and growth <= 0.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
