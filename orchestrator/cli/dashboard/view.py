"""What ``zskill dashboard`` draws: a pure function from a :class:`View` (plain
data) to a rich renderable of exactly the screen's height, tested by printing
to a ``Console(width=100, color_system=None)``.

    zskill dashboard  /srv/agent/.zskill   ● connected (daemon 4242)   14:03:07
    ╭ skills ───────────────────────────────────────────────────────────────────╮
    │   name   state    version  pid  ...  calls/s  p50  p99  errors  calls/s   │
    │ ▸ echo   running  2.0.0    4243 ...      3.2  ...              ▁▂▃▅▇█▇▅   │
    ╰───────────────────────────────────────────────────────────────────────────╯
    ╭ events ───────────────────────────────────────────────────────────────────╮
    │ 14:02:51 echo  ▲ upgraded 1.0.0 -> 2.0.0                                  │
    ╰───────────────────────────────────────────────────────────────────────────╯
    ╭ logs: echo ───────────────────────────────────────────────────────────────╮
    │ 14:03:07.123 2.0.0 4243 out | hello                                       │
    ╰───────────────────────────────────────────────────────────────────────────╯
     ↑/↓ j/k select   q quit

Upgrades are the events an operator looks for, so they carry a marker (▲ a
version deployed, ✗ one rejected and rolled back); the steps of a rollout
that went well are left out of the pane (``zskill events`` has them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from ..._status import EventKind, RolloutOp, SkillState, SkillStatus, StepStatus
from ..format import Row, clock_ms, local_time, short_path
from ..logs import LogRecord, format_record
from ..render import STATE_STYLES, Column, list_columns

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 10
# Left out first when the terminal is narrow (at 100 columns: p50, cpu and
# restarts go); the trend and calls/s go last.
DROP_ORDER = ("p50_ms", "cpu_percent", "restarts", "rss_bytes", "instances", "uptime_s", "errors",
              "p99_ms", "versions")  # fmt: skip
EVENTS_MAX = 8  # lines of the events pane, at most
LOGS_NATURAL = 10  # lines of the log pane when the height is not fixed (--once)
MIN_PANE = 3  # a pane's border and one line
# A ``deployed`` event's op, as the events pane says it.
DONE: dict[str, str] = {RolloutOp.START: "started", RolloutOp.RESTART: "restarted"}


@dataclass(frozen=True, slots=True)
class View:
    """Everything one frame shows."""

    run_dir: str
    connected: bool
    rows: Sequence[SkillStatus] = ()
    selected: str | None = None
    history: Mapping[str, Sequence[float]] = field(default_factory=dict)
    events: Sequence[Row] = ()
    logs: Sequence[LogRecord] = ()
    daemon_pid: int | None = None
    down_for_s: float | None = None  # disconnected for this long
    now: float | None = None  # wall clock, for the header


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values as block characters, scaled to their maximum;
    padded on the left while the history is short."""
    tail = list(values)[-width:]
    top = max(tail, default=0.0)
    if top <= 0:
        return " " * (width - len(tail)) + SPARK_BLOCKS[0] * len(tail)
    last = len(SPARK_BLOCKS) - 1
    marks = [SPARK_BLOCKS[min(last, round(v / top * last))] if v > 0 else " " for v in tail]
    # Zero is a flat line, not a gap: the skill is up but idle.
    marks = [m if m != " " else SPARK_BLOCKS[0] for m in marks]
    return " " * (width - len(tail)) + "".join(marks)


# --- the skills pane ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cell:
    text: str
    style: str = ""
    spark: str = ""  # calls/s cells: the trend, drawn before the number


def _skills_lines(view: View, rows: Sequence[SkillStatus], width: int) -> list[Text]:
    """Like ``zskill list`` (the same columns), with a selection marker and
    each calls/s preceded by its trend. What does not fit in ``width`` is
    left out in :data:`DROP_ORDER`, the trend last but one.

    Drawn as plain lines, not a rich Table: every cell is a short string of
    known width, and a Table's measuring costs a hundred times more, which a
    dashboard redrawing several times a second would pay in CPU."""
    columns = list_columns(rows)
    cells = {c.key: [_cell(c, row, view) for row in rows] for c in columns}
    drop: list[str | None] = [k for k in DROP_ORDER if k in cells]
    drop += [None, "calls_per_s"]  # None: the trend
    spark = True

    def widths() -> list[int]:
        return [max([len(c.header)] + [_width(x, spark) for x in cells[c.key]]) for c in columns]

    while drop and 2 + sum(widths()) + len(columns) - 1 > width:
        key = drop.pop(0)
        if key is None:
            spark = False
        else:
            columns = [c for c in columns if c.key != key]
    sizes = widths()
    header = Text("  ", style="bold", no_wrap=True, overflow="ellipsis")
    for col, w in zip(columns, sizes, strict=True):
        header.append(_justify(col, col.header, w) + " ")
    lines = [header]
    for i, row in enumerate(rows):
        chosen = str(row.get("name")) == view.selected
        style = "reverse" if chosen else ("dim" if not view.connected else "")
        line = Text("▸ " if chosen else "  ", style=style, no_wrap=True, overflow="ellipsis")
        for col, w in zip(columns, sizes, strict=True):
            cell = cells[col.key][i]
            if spark and cell.spark:  # the trend (always SPARK_WIDTH), then the number
                line.append(cell.spark, style="cyan")
                line.append(" " + cell.text.rjust(w - len(cell.spark) - 1))
            else:
                line.append(_justify(col, cell.text, w), style=cell.style)
            line.append(" ")
        line.rstrip()
        lines.append(line)
    return lines


def _cell(col: Column, row: SkillStatus, view: View) -> _Cell:
    text = col.show(row.get(col.key))
    if col.key == "state":
        return _Cell(text, STATE_STYLES.get(text, ""))
    if col.key == "calls_per_s":
        return _Cell(text, spark=sparkline(view.history.get(str(row.get("name")), ())))
    return _Cell(text)


def _width(cell: _Cell, spark: bool) -> int:
    return len(cell.text) + (len(cell.spark) + 1 if spark and cell.spark else 0)


def _justify(col: Column, text: str, width: int) -> str:
    return text.ljust(width) if col.justify == "left" else text.rjust(width)


def _visible_rows(view: View, fit: int) -> Sequence[SkillStatus]:
    """The rows that fit, scrolled so the selected one is among them."""
    rows = view.rows
    if len(rows) <= fit:
        return rows
    index = next((i for i, r in enumerate(rows) if r.get("name") == view.selected), 0)
    start = min(max(0, index - fit // 2), len(rows) - fit)
    return rows[start : start + fit]


# --- the events pane --------------------------------------------------------------


def event_text(ev: Row) -> Text | None:
    """One event as a line of the pane; None for the rollout steps that went well."""
    kind = str(ev.get("type", "?"))
    data = ev.get("data")
    d: Mapping[str, object] = data if isinstance(data, Mapping) else {}
    op = str(d.get("op", ""))
    t = ev.get("time")
    line = Text(local_time(t, "%H:%M:%S") + " ", style="dim", no_wrap=True, overflow="ellipsis")
    line.append(f"{ev.get('skill') or 'daemon':<8} ", style="bold")
    if kind == EventKind.ROLLOUT:
        if d.get("status") != StepStatus.FAILED:
            return None
        line.append(f"{op} failed at {d.get('step')}: {d.get('detail')}", style="red")
    elif kind == EventKind.DEPLOYED and op in (RolloutOp.UPGRADE, RolloutOp.ROLLBACK):
        what = "upgraded" if op == RolloutOp.UPGRADE else "rolled back"
        line.append(f"▲ {what} {d.get('old_version') or '-'} -> {d.get('new_version')}",
                    style="bold green")  # fmt: skip
    elif kind == EventKind.DEPLOYED:
        done = DONE.get(op, op)
        line.append(f"{done} {d.get('new_version')}", style="green")
    elif kind == EventKind.ROLLED_BACK:
        line.append(f"✗ {op} rejected: {d.get('reason')}", style="bold red")
        if d.get("old_version"):
            line.append(f" ({d.get('old_version')} still serving)", style="red")
    elif kind == EventKind.EXIT:
        expected = bool(d.get("expected"))
        line.append(f"exit {d.get('version') or '-'} pid {d.get('pid')}: {d.get('how')}",
                    style="dim" if expected else "yellow")  # fmt: skip
    elif kind == EventKind.ERRORED:
        line.append(f"errored after {d.get('failures')} crashes: {d.get('last_exit')}", style="red")
    elif kind == EventKind.TOOLS_CHANGED:
        parts = [f"+{n}" for n in _names(d.get("added"))]
        parts += [f"-{n}" for n in _names(d.get("removed"))]
        parts += [f"~{n}" for n in _names(d.get("changed"))]
        line.append(f"tools {' '.join(parts)}", style="cyan")
    elif kind in (EventKind.SPAWN, EventKind.READY):
        version = f" {d.get('version')}" if d.get("version") else ""
        line.append(f"{kind}{version} pid {d.get('pid')}", style="dim")
    else:
        rest = " ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", [], {}))
        warn = (EventKind.BACKOFF, EventKind.UNRESPONSIVE, EventKind.RESTART)
        style = "yellow" if kind in warn else ""
        line.append(f"{kind} {rest}".rstrip(), style=style)
    return line


def _names(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _event_lines(events: Sequence[Row], n: int) -> list[Text]:
    lines: list[Text] = []
    for ev in reversed(events):
        if len(lines) >= n:
            break
        text = event_text(ev)
        if text is not None:
            lines.append(text)
    return lines[::-1]


# --- the frame ----------------------------------------------------------------------


def _header(view: View) -> Text:
    head = Text("zskill dashboard", style="bold", no_wrap=True, overflow="ellipsis")
    head.append(f"  {short_path(view.run_dir)}  ")
    if view.connected:
        head.append("● connected", style="green")
        if view.daemon_pid is not None:
            head.append(f" (daemon {view.daemon_pid})", style="dim")
    else:
        head.append("○ disconnected", style="bold red")
        if view.down_for_s is not None:
            head.append(f" for {view.down_for_s:.0f} s", style="red")
        head.append("; reconnecting", style="red")
    if view.now is not None:
        head.append(f"  {clock_ms(view.now)[:8]}", style="dim")
    return head


def _footer(view: View) -> Text:
    running = sum(1 for r in view.rows if r.get("state") == SkillState.RUNNING)
    foot = Text(" ↑/↓ j/k select   q quit", style="dim", no_wrap=True, overflow="ellipsis")
    foot.append(f"   {len(view.rows)} skills, {running} running", style="dim")
    return foot


def _log_line(rec: LogRecord) -> Text:
    return Text(format_record(rec, date=False), style="red" if rec.is_err else "", no_wrap=True,
                overflow="ellipsis")  # fmt: skip


def natural_width(view: View) -> int:
    """The width that shows every column of the skills pane (and the trend)."""
    if not view.rows:
        return 0
    lines = _skills_lines(view, view.rows, 10_000)
    return max(line.cell_len for line in lines) + 4


def render(view: View, *, width: int, height: int | None = None) -> RenderableType:
    """The whole frame, ``height`` lines tall (None: as tall as its content)."""
    shown_events = [e for e in view.events if event_text(e) is not None]
    events_want = MIN_PANE + max(0, min(len(shown_events), EVENTS_MAX) - 1)
    if height is None:
        rows = view.rows
        skills_h = len(rows) + 3 if rows else MIN_PANE
        events_h = events_want
        logs_h = 2 + max(1, min(len(view.logs), LOGS_NATURAL))
    else:
        avail = height - 2  # less the header and the footer
        # The skills first (all rows if they fit beside two minimal panes),
        # then events up to half of what is left, then the logs the rest.
        rows = _visible_rows(view, max(1, avail - 2 * MIN_PANE - 3))
        skills_h = len(rows) + 3 if rows else MIN_PANE
        rest = avail - skills_h
        events_h = max(MIN_PANE, min(events_want, rest // 2))
        logs_h = max(MIN_PANE, rest - events_h)
    if rows:
        skills: RenderableType = Group(*_skills_lines(view, rows, width - 4))  # less borders
    else:
        skills = Text("no skills" if view.connected else "waiting for the daemon", style="dim")
    events: RenderableType = (
        Group(*_event_lines(shown_events, events_h - 2))
        if shown_events
        else Text("no events yet", style="dim")
    )
    tail = [_log_line(r) for r in list(view.logs)[-(logs_h - 2) :]]
    logs: RenderableType = Group(*tail) if tail else Text("no output yet", style="dim")
    return Group(
        _header(view),
        Panel(skills, title="skills", title_align="left", height=skills_h),
        Panel(events, title="events", title_align="left", height=events_h),
        Panel(logs, title=f"logs: {view.selected or '-'}", title_align="left", height=logs_h),
        _footer(view),
    )
