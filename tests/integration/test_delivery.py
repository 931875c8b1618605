"""Progressive delivery with real processes: the breaking-change gate,
rollback to any kept release, instances and scale, canaries."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import Daemon, Load, example, running_daemon, short_dir, variant, wait_for

from orchestrator import UpgradeFailed

FLAKY = {
    'return " ".join([text] * times)': (
        'if random.random() < 0.3:\n        raise ValueError("flaky")\n'
        '    return " ".join([text] * times)'
    )
}
BREAKING = {
    "def say(text: str, times: int = 1) -> str:": "def say(text: str, times: int, sep: str) -> str:"
}


@pytest.fixture
def zs() -> Iterator[Daemon]:
    with running_daemon({"echo": example("echo", grace_s=5)}) as d:
        d.wait_running("echo")
        yield d


@pytest.fixture
def rel() -> Iterator[Path]:
    d = short_dir("zr")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def status(d: Daemon) -> dict[str, Any]:
    return d.status("echo")


def ready_pids(d: Daemon) -> set[int]:
    return {i["pid"] for i in status(d)["instances"] if i["state"] == "ready"}


def in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# --- the breaking-change gate and rollback --to ------------------------------------


def test_breaking_change_is_refused_unless_allowed(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    v2 = variant(rel, "v2", version="2.0.0", replace=BREAKING)
    with pytest.raises(UpgradeFailed) as info:
        c.upgrade("echo", from_dir=v2)
    d = info.value.details
    assert d["step"] == "gate"
    assert d["tools"]["changed"] == ["say"]
    assert sorted(d["tools"]["breaking"]) == [
        "say: argument 'times' is now required",
        "say: new required argument 'sep'",
    ]
    assert status(zs)["version"] == "1.0.0"
    assert c.call("echo", "say", {"text": "a"}) == "a"

    report = c.upgrade("echo", from_dir=v2, allow_breaking=True)
    assert report["ok"] and report["new_version"] == "2.0.0"
    assert report["tools"]["changed"] == ["say"] and report["tools"]["added"] == []
    assert report["tools_changed"] is True


def test_additions_pass_and_rollback_to_any_release(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    extra = '@skill.tool()\ndef shout(text: str) -> str:\n    """Upper."""\n    return text.upper()'
    r2 = c.upgrade("echo", from_dir=variant(rel, "v2", version="2.0.0", extra=extra))
    assert r2["tools"] == {"added": ["shout"], "removed": [], "changed": [], "breaking": []}
    r3 = c.upgrade("echo", from_dir=variant(rel, "v3", version="3.0.0", extra=extra))
    assert r3["ok"] and r3["tools"] == {"added": [], "removed": [], "changed": [], "breaking": []}
    first = min(r["id"] for r in c.releases("echo"))
    back = c.rollback("echo", to=first)  # a rollback is not gated: going back is a choice
    assert back["ok"] and back["new_version"] == "1.0.0"
    assert back["tools"]["removed"] == ["shout"]
    assert c.call_detailed("echo", "say", {"text": "x"}).version == "1.0.0"


# --- instances and scale ---------------------------------------------------------


def test_three_instances_are_replaced_by_an_upgrade_with_zero_failed_calls(rel: Path) -> None:
    with running_daemon({"echo": example("echo", instances=3, grace_s=5)}) as zs:
        st = zs.wait_running("echo")["echo"]
        old = {i["pid"] for i in st["instances"]}
        assert len(old) == 3 and st["instances_wanted"] == 3
        assert all(psutil.pid_exists(p) for p in old)
        c = zs.client()
        with Load(c, "echo", "say", {"text": "x"}, callers=6) as load:
            load.wait_calls(100)
            report = c.upgrade("echo", from_dir=variant(rel, "v2", version="2.0.0"))
            load.wait_calls(100)
        assert report["ok"] and len(report["pids"]) == 3
        new = ready_pids(zs)
        assert new == set(report["pids"]) and not new & old
        wait_for(lambda: not any(psutil.pid_exists(p) for p in old), 15, what="old ones gone")
        assert load.failures == []
        assert set(load.versions) == {"1.0.0", "2.0.0"}


def test_scale_up_and_down_under_load_with_zero_failed_calls(zs: Daemon) -> None:
    c = zs.client()
    first = ready_pids(zs)
    with Load(c, "echo", "say", {"text": "x"}, callers=6) as load:
        load.wait_calls(50)
        up = c.scale("echo", 3)
        assert len([i for i in up["instances"] if i["state"] == "ready"]) == 3
        assert first <= ready_pids(zs)
        load.wait_calls(100)
        down = c.scale("echo", 1)
        assert down["instances_wanted"] == 1
        wait_for(lambda: ready_pids(zs) == first, 10, what="back to the first process")
        load.wait_calls(50)
    assert load.failures == []


# --- canaries ------------------------------------------------------------------------


def test_faulty_canary_is_rolled_back_at_its_first_step(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    v2 = variant(rel, "v2", version="2.0.0", extra="import random", replace=FLAKY)
    plan = {"weights": [20, 50, 100], "step_s": 1.5, "max_error_rate": 0.05}
    with Load(c, "echo", "say", {"text": "x"}, callers=4) as load:
        load.wait_calls(50)
        with pytest.raises(UpgradeFailed) as info:
            c.upgrade("echo", from_dir=v2, canary=plan)
        load.wait_calls(50)
    d = info.value.details
    assert d["step"] == "canary" and "failed at 20%" in d["reason"]
    canary = d["canary"]
    assert canary["step"] == 1 and canary["last_verdict"]["ok"] is False
    assert canary["last_verdict"]["canary"]["errors"] > 0
    assert canary["last_verdict"]["stable"]["errors"] == 0
    # Every failed call was the canary's; the stable share had none.
    assert load.failures and all("flaky" in f for f in load.failures)
    assert load.versions.get("1.0.0", 0) > 0
    assert status(zs)["version"] == "1.0.0"


def test_healthy_canary_is_promoted_through_every_step(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    steps: list[dict[str, Any]] = []
    plan = {"weights": [20, 50, 100], "step_s": 1.0}
    with Load(c, "echo", "say", {"text": "x"}, callers=4) as load:
        load.wait_calls(30)
        report = c.upgrade(
            "echo",
            from_dir=variant(rel, "v2", version="2.0.0"),
            canary=plan,
            on_progress=steps.append,
        )
        load.wait_calls(30)
    assert report["ok"] and report["new_version"] == "2.0.0"
    passed = [s["detail"] for s in steps if s["step"] == "canary" and s["status"] == "ok"]
    assert [p.split(":")[0] for p in passed] == ["20%", "50%", "100%"]
    assert load.failures == []
    assert load.versions.get("1.0.0") and load.versions.get("2.0.0")
    assert status(zs)["versions"][0]["version"] == "2.0.0"


def test_abort_and_promote_mid_rollout(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    plan = {"weights": [25, 50], "step_s": 60}
    v2 = variant(rel, "v2", version="2.0.0")

    def in_canary() -> bool:
        view = c.rollout("echo")
        return bool(view and view.get("phase") == "canary")

    t, out = in_background(lambda: zs.client().upgrade("echo", from_dir=v2, canary=plan))
    wait_for(in_canary, 15, what="the canary's first step")
    st = status(zs)
    assert {(v["version"], v["role"], v["weight"]) for v in st["versions"]} == {
        ("1.0.0", "stable", 75),
        ("2.0.0", "canary", 25),
    }
    assert st["rollout"]["weight"] == 25
    c.rollout("echo", "abort")
    t.join(15)
    assert isinstance(out.get("error"), UpgradeFailed)
    assert "aborted by hand" in out["error"].details["reason"]
    assert status(zs)["version"] == "1.0.0"

    t, out = in_background(lambda: zs.client().upgrade("echo", from_dir=v2, canary=plan))
    wait_for(in_canary, 15, what="the canary's first step")
    c.rollout("echo", "pause")
    assert c.rollout("echo")["paused"] is True
    c.rollout("echo", "promote")
    t.join(15)
    assert out.get("result", {}).get("ok") is True, out
    wait_for(lambda: status(zs)["version"] == "2.0.0", 10, what="2.0.0 serving")
    assert c.rollout("echo") is None


def test_sessions_stay_on_one_version_through_a_canary(zs: Daemon, rel: Path) -> None:
    c = zs.client()
    plan = {"weights": [50, 100], "step_s": 60}
    v2 = variant(rel, "v2", version="2.0.0")
    t, out = in_background(lambda: zs.client().upgrade("echo", from_dir=v2, canary=plan))
    wait_for(
        lambda: (c.rollout("echo") or {}).get("phase") == "canary", 15, what="the canary's step"
    )
    served: dict[str, list[str]] = {}

    def session(name: str) -> None:
        for n in range(6):
            r = c.call_detailed("echo", "say", {"text": f"{name}-{n}"}, session=name)
            assert r.value == f"{name}-{n}"
            served.setdefault(name, []).append(r.version)

    threads = [threading.Thread(target=session, args=(f"s{i}",)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    # Call by call: every session stayed on the version of its first call.
    assert len(served) == 16 and all(len(v) == 6 for v in served.values())
    assert all(len(set(v)) == 1 for v in served.values()), served
    assert {v[0] for v in served.values()} == {"1.0.0", "2.0.0"}
    # Later calls of a pinned session keep to its version too.
    c.rollout("echo", "pause")
    old_sessions = [s for s, v in served.items() if v[0] == "1.0.0"]
    for s in old_sessions:
        assert c.call_detailed("echo", "say", {"text": "x"}, session=s).version == "1.0.0"
    c.rollout("echo", "abort")
    t.join(15)
    assert isinstance(out.get("error"), UpgradeFailed)
    # One version again: every session is served by it.
    assert c.call_detailed("echo", "say", {"text": "x"}, session="s1").version == "1.0.0"
