"""The CLI's rich renderables: the skills table, upgrade progress, releases.

Pure functions from plain data (the maps of docs/protocol.md) to rich
renderables, each tested by printing to a ``Console(width=100,
color_system=None)``. Only commands import this module, so rich stays out
of ``zskill --help``. Plain-text formats live in :mod:`.format`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, JustifyMethod
from rich.status import Status
from rich.table import Table
from rich.text import Text

from .._status import SkillState, SkillStatus, StepStatus
from .format import (
    Row,
    canary_share,
    human_bytes,
    human_duration,
    human_elapsed,
    human_ms,
    human_percent,
    human_rate,
    local_time,
    plain,
    ready_count,
    short_path,
)

STATE_STYLES: dict[str, str] = {
    SkillState.RUNNING: "green",
    SkillState.STARTING: "yellow",
    SkillState.UPGRADING: "yellow",
    SkillState.BACKOFF: "yellow",
    SkillState.STOPPING: "yellow",
    SkillState.STOPPED: "dim",
    SkillState.ERRORED: "red",
}


def console() -> Console:
    """The console commands print to: no highlighting of numbers and paths,
    colour only on a terminal (rich's own rules, NO_COLOR honoured)."""
    return Console(highlight=False)


# --- zskill list -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    key: str
    show: Callable[[Any], str]
    optional: bool = False
    justify: JustifyMethod = "right"
    only_when_set: bool = False  # shown only while some row has a value
    # Shown only when some row needs it (None: whenever a row has the key).
    needed: Callable[[Any], bool] | None = None


def _several(instances: Any) -> bool:
    return ready_count(instances) not in ("-", "0", "1")


def _canary(versions: Any) -> bool:
    return canary_share(versions) != "-"


LIST_COLUMNS: tuple[Column, ...] = (
    Column("name", "name", plain, justify="left"),
    Column("state", "state", plain, justify="left"),
    Column("version", "version", plain, justify="left"),
    Column("pid", "pid", plain),
    Column("inst", "instances", ready_count, optional=True, needed=_several),
    Column("canary", "versions", canary_share, optional=True, justify="left", needed=_canary),
    Column("uptime", "uptime_s", human_duration),
    Column("restarts", "restarts", plain),
    Column("cpu", "cpu_percent", human_percent, optional=True),
    Column("mem", "rss_bytes", human_bytes, optional=True),
    Column("in-flight", "in_flight", plain),
    Column("queued", "queued", plain),
    Column("longest", "longest_call", lambda v: longest_call(v), True, only_when_set=True),
    Column("calls/s", "calls_per_s", human_rate, optional=True),
    Column("p50", "p50_ms", human_ms, optional=True),
    Column("p99", "p99_ms", human_ms, optional=True),
    Column("errors", "errors", plain, optional=True),
)


def longest_call(value: Any) -> str:
    """The call running longest now: ``12.3 s work``; ``-`` when none runs."""
    if not isinstance(value, Mapping):
        return "-"
    return f"{human_elapsed(value.get('running_s'))} {value.get('tool', '?')}"


def _has(rows: Sequence[Row], key: str) -> bool:
    return any(row.get(key) is not None for row in rows)


# What a narrow terminal loses first: a squeezed table would cut names and
# states into ellipses, which is worse than a missing metric (--json has all).
LIST_DROP_ORDER = ("longest_call", "p50_ms", "cpu_percent", "errors", "rss_bytes", "restarts",
                   "instances", "uptime_s", "p99_ms", "calls_per_s", "versions")  # fmt: skip


def list_table(statuses: Sequence[SkillStatus], *, width: int | None = None) -> Table:
    """The ``zskill list`` table (:func:`list_columns`). Columns are two
    spaces apart, one when that would not fit in ``width``; then the least
    telling columns are left out (:data:`LIST_DROP_ORDER`) until it fits."""
    columns = list_columns(statuses)
    table = _list_table(statuses, columns, gap=2)
    if width is None or natural_width(table) <= width:
        return table
    table = _list_table(statuses, columns, gap=1)
    drop = [k for k in LIST_DROP_ORDER if any(c.key == k for c in columns)]
    while drop and natural_width(table) > width:
        key = drop.pop(0)
        columns = [c for c in columns if c.key != key]
        table = _list_table(statuses, columns, gap=1)
    return table


def list_notes(statuses: Sequence[SkillStatus]) -> list[Text]:
    """Under the table: why each errored (or backing off) skill is down, and
    which hold slots with handlers that ignore their cancel."""
    notes = []
    for row in statuses:
        state, last_exit = row.get("state"), row.get("last_exit")
        if state in (SkillState.ERRORED, SkillState.BACKOFF) and last_exit:
            note = Text(f"{row.get('name')}: ")
            note.append(str(state), style=STATE_STYLES.get(str(state), ""))
            note.append(f"; last exit: {last_exit}")
            if state == SkillState.ERRORED:
                note.append(f" (`zskill start {row.get('name')}` clears it)", style="dim")
            notes.append(note)
        cancelling = row.get("cancelling") or 0
        if cancelling:
            calls = "call still runs" if cancelling == 1 else "calls still run"
            notes.append(
                Text(
                    f"{row.get('name')}: {cancelling} cancelled {calls}, holding "
                    f"{'its slot' if cancelling == 1 else 'their slots'} (past cancel_grace_s "
                    "the process is replaced)"
                )
            )
    return notes


def list_columns(statuses: Sequence[SkillStatus]) -> list[Column]:
    """The core columns, and the metric ones the daemon reports (a metric
    with no value yet, like p50 before any call, still gets its column)."""
    return [
        c
        for c in LIST_COLUMNS
        if not c.optional
        or (
            (_has(statuses, c.key) if c.only_when_set else any(c.key in r for r in statuses))
            and (c.needed is None or any(c.needed(r.get(c.key)) for r in statuses))
        )
    ]


def natural_width(table: Table) -> int:
    """The width ``table`` takes when nothing limits it."""
    measure = Console(width=10_000, color_system=None).measure(table)
    return measure.maximum


def _list_table(statuses: Sequence[SkillStatus], columns: Sequence[Column], *, gap: int) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, gap, 0, 0))
    for col in columns:
        table.add_column(col.header, justify=col.justify, no_wrap=col.key != "name")
    for row in statuses:
        cells: list[str | Text] = []
        for col in columns:
            text = col.show(row.get(col.key))
            if col.key == "state":
                cells.append(Text(text, style=STATE_STYLES.get(text, "")))
            else:
                cells.append(text)
        table.add_row(*cells)
    return table


# --- zskill upgrade / rollback -------------------------------------------------------


def step_line(progress: Row, *, unicode: bool = True) -> Text:
    """``✓ health     12 ms`` or ``✗ health     5.0 s  health hook returned false``."""
    ok = progress.get("status") != StepStatus.FAILED
    mark = ("✓" if ok else "✗") if unicode else ("ok" if ok else "FAIL")
    text = Text()
    text.append(mark, style="green" if ok else "red")
    text.append(f" {progress.get('step', '?')!s:<9}{human_elapsed(progress.get('elapsed_s')):>7}")
    detail = progress.get("detail")
    if detail:
        text.append(f"  {detail}", style="" if ok else "red")
    return text


class ProgressPrinter:
    """Prints an upgrade's steps as they finish; a spinner names the running
    step on a terminal. Call it with each progress map, then :meth:`close`."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._unicode = out.encoding.lower().startswith("utf")
        self._status: Status | None = None
        self.printed = 0

    def __call__(self, progress: Row) -> None:
        if progress.get("status") == StepStatus.STARTED:
            self._spin(f"{progress.get('step', '?')} ...")
            return
        self.close()  # the spinner names a running step; this one is over
        self._out.print(step_line(progress, unicode=self._unicode))
        self.printed += 1

    def replay(self, report: Row) -> None:
        """Print the report's steps when no progress came live."""
        if self.printed:
            return
        for step in report.get("steps") or ():
            if isinstance(step, Mapping) and step.get("status") != StepStatus.STARTED:
                self(step)

    def _spin(self, message: str) -> None:
        if not self._out.is_terminal:
            return
        if self._status is None:
            self._status = self._out.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


# --- zskill releases -----------------------------------------------------------------


def _release_cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "created_at":
        return local_time(value)
    if key == "current":
        return "*" if value else ""
    if key in ("source", "path") and isinstance(value, str):
        return short_path(value)
    if key == "digest" and isinstance(value, str):
        return value[:12]  # as git shortens a hash
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
        if len(items) > 4:
            items = [*items[:3], f"+{len(items) - 3}"]
        return ", ".join(items)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


RELEASE_CORE = ("current", "id", "version", "created_at", "source")
RELEASE_HEADERS = {"current": "", "created_at": "created"}
RELEASE_NO_WRAP = {"current", "id", "version", "created_at", "digest"}


def releases_table(releases: Sequence[Row], *, width: int | None = None) -> Table:
    """The core keys (id, version, created, source, current marker) first,
    then whatever else the maps carry (tools, ...); extra columns that would
    not fit in ``width`` are left out, last first (``--json`` has them all)."""
    core = [k for k in RELEASE_CORE if _has(releases, k)]
    extra: list[str] = ["tools"] if _has(releases, "tools") else []
    for row in releases:
        extra.extend(k for k in row if k not in core and k not in extra)
    table = _releases_table(releases, core + extra)
    while extra and width is not None and natural_width(table) > width:
        extra.pop()
        table = _releases_table(releases, core + extra)
    return table


def _releases_table(releases: Sequence[Row], keys: Sequence[str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in keys:
        table.add_column(
            RELEASE_HEADERS.get(key, key.replace("_", " ")),
            no_wrap=key in RELEASE_NO_WRAP,
            overflow="fold",
        )
    for row in releases:
        style = "bold" if row.get("current") else ""
        table.add_row(*(_release_cell(k, row.get(k)) for k in keys), style=style)
    return table
