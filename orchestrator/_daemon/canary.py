"""A canary: the new version takes a growing share of calls, step by step,
and each step is judged against the stable version over the same time.

    zskill upgrade echo --canary 5,25,100 --step-s 30 --max-error-rate 0.02 --max-p99-ratio 2

At each step's end the two versions' calls in that step are compared:

- error rate: the canary's may exceed the stable's by at most
  ``max_error_rate`` (an absolute difference: 0.02 = two points);
- p99 latency: the canary's may be at most ``max_p99_ratio`` times the
  stable's, judged once both served ``MIN_CALLS_P99`` calls in the step
  (fewer say nothing about a 99th percentile), and only when it is also
  ``P99_SLACK_MS`` slower: on a busy machine, a fresh process's first calls
  and scheduling noise move a p99 of a few milliseconds by several times,
  which is no regression anyone would roll back for.

When the stable version served nothing in a step (the canary took 100%),
it is judged against the stable's figures over the whole canary so far.
A step that fails rolls the canary back. Pure: the figures come from
:class:`~.stats.SkillStats` totals, snapshotted when a step begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ipc import BadRequest

from .stats import BOUNDS, VersionTotals, percentile

MIN_CALLS_P99 = 20
P99_SLACK_MS = 25.0
DEFAULT_STEP_S = 30.0
DEFAULT_MAX_ERROR_RATE = 0.02
DEFAULT_MAX_P99_RATIO = 2.0


@dataclass(frozen=True, slots=True)
class CanaryPlan:
    """The canary's weights (percent of calls, rising, the last 1..100),
    each held ``step_s``, and the gate every step must pass."""

    weights: tuple[int, ...]
    step_s: float = DEFAULT_STEP_S
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_p99_ratio: float = DEFAULT_MAX_P99_RATIO

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> CanaryPlan:
        """From the ``upgrade`` request's ``canary`` argument; BadRequest
        naming what is wrong."""
        raw = args.get("weights")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("canary 'weights' must be a list of percentages such as [5, 25, 100]")
        weights: list[int] = []
        for w in raw:
            if type(w) is not int or not 0 < w <= 100:
                raise BadRequest(f"canary weight {w!r} must be a whole percentage in 1..100")
            if weights and w <= weights[-1]:
                raise BadRequest(f"canary weights must rise: {raw!r}")
            weights.append(w)
        step_s = _number(args, "step_s", DEFAULT_STEP_S, low=0.05)
        rate = _number(args, "max_error_rate", DEFAULT_MAX_ERROR_RATE, low=0.0, high=1.0)
        ratio = _number(args, "max_p99_ratio", DEFAULT_MAX_P99_RATIO, low=1.0)
        return cls(tuple(weights), step_s, rate, ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "step_s": self.step_s,
            "max_error_rate": self.max_error_rate,
            "max_p99_ratio": self.max_p99_ratio,
        }


def _number(
    args: dict[str, Any], key: str, default: float, *, low: float, high: float = 1e9
) -> float:
    v = args.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise BadRequest(f"canary {key!r} must be a number in {low:g}..{high:g} (got {v!r})")
    return float(v)


@dataclass(frozen=True, slots=True)
class Window:
    """One version's calls over one step: a difference of two totals."""

    calls: int = 0
    errors: int = 0
    hist: tuple[int, ...] = ()

    @classmethod
    def between(cls, now: VersionTotals | None, base: Window | None) -> Window:
        """``now`` minus ``base`` (a snapshot taken when the step began)."""
        if now is None:
            return cls()
        if base is None or not base.hist:
            return cls(now.calls, now.errors, tuple(now.hist))
        hist = tuple(a - b for a, b in zip(now.hist, base.hist, strict=True))
        return cls(now.calls - base.calls, now.errors - base.errors, hist)

    @classmethod
    def snapshot(cls, t: VersionTotals | None) -> Window:
        return cls() if t is None else cls(t.calls, t.errors, tuple(t.hist))

    def plus(self, other: Window) -> Window:
        if not self.hist:
            return other
        if not other.hist:
            return self
        hist = tuple(a + b for a, b in zip(self.hist, other.hist, strict=True))
        return Window(self.calls + other.calls, self.errors + other.errors, hist)

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def p99_ms(self) -> float | None:
        return percentile(list(self.hist), self.calls, 0.99) if self.hist else None

    def figures(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: str
    stable: dict[str, Any]
    canary: dict[str, Any]


def judge(
    plan: CanaryPlan, stable: Window, canary: Window, before: Window | None = None
) -> Verdict:
    """Does the canary's step pass? ``before``: the stable's calls over the
    earlier steps, the baseline when it served none in this one."""
    base = stable if stable.calls or before is None else before
    why: list[str] = []
    limit = base.error_rate + plan.max_error_rate
    if canary.calls and canary.error_rate > limit:
        why.append(
            f"error rate {canary.error_rate:.1%} ({canary.errors} of {canary.calls} calls) "
            f"above stable's {base.error_rate:.1%} + {plan.max_error_rate:.1%}"
        )
    cp, sp = canary.p99_ms, base.p99_ms
    judged_p99 = canary.calls >= MIN_CALLS_P99 and base.calls >= MIN_CALLS_P99
    if (
        judged_p99
        and cp is not None
        and sp is not None
        and cp > plan.max_p99_ratio * sp
        and cp - sp > P99_SLACK_MS
    ):
        why.append(f"p99 {cp:g} ms above {plan.max_p99_ratio:g} x stable's {sp:g} ms")
    figures = (
        f"canary {canary.calls} calls, {canary.error_rate:.1%} errors, p99 {_ms(cp)}; "
        f"stable {base.calls} calls, {base.error_rate:.1%} errors, p99 {_ms(sp)}"
    )
    detail = ("; ".join(why) + f" ({figures})") if why else figures
    return Verdict(not why, detail, base.figures(), canary.figures())


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:g} ms"


def empty_hist() -> tuple[int, ...]:
    return (0,) * (len(BOUNDS) + 1)


__all__ = ["CanaryPlan", "Verdict", "Window", "empty_hist", "judge"]
