"""The CLI's text formats: human units, times, one-line summaries, event
lines and JSON output. Plain strings only (no rich), so that commands printing
plain text or JSON stay light."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._json import json_default

if TYPE_CHECKING:
    # Types only: the enums of _status cost ~2.5 ms to import, which this
    # module, the light one of the CLI, does not pay.
    from .._status import SkillStatus

Row = Mapping[str, Any]


def human_duration(seconds: float | None) -> str:
    """An uptime: ``3s``, ``4m12s``, ``2h03m``, ``1d02h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_elapsed(seconds: float | None) -> str:
    """A step's duration: ``12 ms``, ``5.0 s``, ``2m05s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return human_duration(seconds)


def human_ms(ms: float | None) -> str:
    """A latency, compact for a table column: ``0.4ms``, ``12ms``, ``1.25s``."""
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.2f}s"


def human_bytes(n: float | None) -> str:
    """A size, compact for a table column, in binary units as top shows them:
    ``512B``, ``1.5K``, ``45.2M``, ``120M``, ``3.0G``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B" or value >= 100:
                return f"{value:.0f}{unit}"
            return f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_percent(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.0f}%" if p >= 100 else f"{p:.1f}%"


def human_rate(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.0f}" if r >= 100 else f"{r:.1f}"


def plain(value: Any) -> str:
    return "-" if value is None else str(value)


def ready_count(instances: Any) -> str:
    """The ``inst`` column: how many processes serve (of ``instances``)."""
    if not isinstance(instances, list):
        return "-"
    return str(sum(1 for i in instances if isinstance(i, Mapping) and i.get("state") == "ready"))


def canary_share(versions: Any) -> str:
    """The ``canary`` column: ``2.0.0 25%`` while a canary serves, else ``-``."""
    if isinstance(versions, list):
        for v in versions:
            if isinstance(v, Mapping) and v.get("role") == "canary":
                return f"{v.get('version')} {v.get('weight')}%"
    return "-"


def local_time(t: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An epoch time in local time; anything else (an ISO string) as it is."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return plain(t)
    return time.strftime(fmt, time.localtime(t))


def local_time_ms(t: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time with milliseconds (``fmt`` + ``.mmm``)."""
    # Round once, so that .9996 carries into the seconds instead of showing .1000.
    whole, ms = divmod(round(t * 1000), 1000)
    return time.strftime(fmt, time.localtime(whole)) + f".{ms:03d}"


def clock_ms(t: float) -> str:
    """``HH:MM:SS.mmm`` in local time."""
    return local_time_ms(t, "%H:%M:%S")


def status_line(done: str, skill: str, status: SkillStatus, elapsed_s: float) -> str:
    """After start/stop/restart: ``restarted echo in 0.31 s: running 1.0.0 (pid 42)``."""
    line = f"{done} {status.get('name') or skill} in {elapsed_s:.2f} s"
    state = status.get("state")
    if state is None or state == "stopped":  # SkillState.STOPPED
        return line if state is None or done == "stopped" else f"{line}: stopped"
    line += f": {state}"
    if status.get("version") is not None:
        line += f" {status['version']}"
    if status.get("pid") is not None:
        line += f" (pid {status['pid']})"
    return line


def upgrade_summary(skill: str, report: Row) -> str:
    """``echo 1.0.0 -> 1.1.0 in 0.42 s``."""
    name = report.get("skill", skill)
    old, new = plain(report.get("old_version")), plain(report.get("new_version"))
    line = f"{name} {old} -> {new}"
    duration = report.get("duration_s")
    if isinstance(duration, (int, float)):
        line += f" in {duration:.2f} s"
    if report.get("release") is not None:
        line += f" (release {report['release']})"
    if report.get("tools_changed"):
        line += "; tools changed"
    same = report.get("old_version") and report.get("old_version") == report.get("new_version")
    if same and report.get("op", "upgrade") == "upgrade":
        # Not an error (the code may well have changed), but releases and
        # events can then tell the two apart only by their number.
        line += f"; the same version ({new}): bump it in the skill to tell releases apart"
    return line


def stderr_lines(details: Row) -> list[str]:
    """A failed start, restart or upgrade: the last lines the new process
    wrote on stderr (its traceback), as the daemon kept them, to print."""
    tail = details.get("stderr_tail")
    if not isinstance(tail, list) or not tail:
        return []
    return ["the new process's last stderr lines:", *(f"  | {line}" for line in tail)]


def tool_lines(tools: Any) -> list[str]:
    """An upgrade's tool changes: ``tools added: a, b`` ... and each
    breaking change on its own line."""
    if not isinstance(tools, Mapping):
        return []
    out = []
    for key in ("added", "removed", "changed"):
        names = tools.get(key) or []
        if names:
            out.append(f"tools {key}: {', '.join(str(n) for n in names)}")
    out += [f"  breaking: {b}" for b in tools.get("breaking") or []]
    return out


def rollout_lines(skill: str, view: Row | None, action: str | None) -> list[str]:
    """``zskill rollout``: the rollout in progress, a canary's weights and figures."""
    if view is None:
        return [f"{skill}: no rollout in progress"]
    head = f"{skill}: {view.get('op')} {plain(view.get('old_version'))} -> "
    head += f"{plain(view.get('new_version'))}, {view.get('phase')}"
    if action:
        head = f"{action}: " + head
    out = [head]
    if "weight" not in view or view.get("phase") != "canary":
        return out
    paused = " (paused)" if view.get("paused") else ""
    out.append(
        f"canary step {view.get('step')}/{view.get('steps')}: {view.get('weight')}% of calls"
        f"{paused}; plan {view.get('plan')}"
    )
    step = view.get("this_step")
    if isinstance(step, Mapping):
        for role in ("stable", "canary"):
            f = step.get(role)
            if isinstance(f, Mapping):
                out.append(
                    f"  {role:<7} {f.get('calls')} calls, {f.get('errors')} errors "
                    f"({f.get('error_rate')}), p99 {plain(f.get('p99_ms'))} ms"
                )
    verdict = view.get("last_verdict")
    if isinstance(verdict, Mapping):
        out.append(
            f"last step: {'passed' if verdict.get('ok') else 'failed'}: {verdict.get('detail')}"
        )
    return out


def _kv(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def event_line(event: Row) -> str:
    """``2024-05-01 14:03:07.123 echo upgraded old=1.0.0 new=1.1.0``."""
    t = event.get("time")
    when = local_time_ms(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else plain(t)
    parts = [when, str(event.get("skill") or "-"), str(event.get("type", "?"))]
    data = event.get("data")
    if isinstance(data, Mapping):
        # Empty values are noise in a human line; --json keeps them.
        parts.extend(f"{k}={_kv(v)}" for k, v in data.items() if v is not None and v != "")
    elif data is not None:
        parts.append(_kv(data))
    return " ".join(parts)


_RELOAD_MARKS = {"add": "+", "remove": "-", "restart": "~", "update": "*", "keep": "="}


def reload_line(outcome: Row) -> str:
    """One skill's part of ``zskill reload``: ``~ echo  restarted (env): version 1.0.0, pid 42``."""
    action = str(outcome.get("action", "?"))
    mark = _RELOAD_MARKS.get(action, "?") if outcome.get("ok", True) else "!"
    keys = outcome.get("keys") or []
    what = str(outcome.get("detail", ""))
    if keys:
        what += f" ({', '.join(str(k) for k in keys)})"
    if outcome.get("why"):
        what += f": {outcome['why']}"
    if outcome.get("pid") is not None and action != "remove":  # what serves now
        what += f": version {outcome.get('version') or '?'}, pid {outcome['pid']}"
    return f"  {mark} {outcome.get('skill', '?'):<12} {what}"


def short_path(value: str) -> str:
    """A path relative to the current directory when it lies below it."""
    try:
        rel = Path(value).relative_to(Path.cwd())
    except ValueError:
        return value
    return str(rel) if str(rel) != "." else value


def to_json(value: Any, *, indent: int | None = None) -> str:
    """JSON for scripts; bytes (msgpack can carry them) as UTF-8 text or base64."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=json_default)
