"""The view of a foreground ``zskill up``, as ``docker compose up`` shows
its services: every event and every line the skills print, each prefixed
by skill and version (a colour per skill on a terminal).

    echo 1.0.0  ● ready (pid 4242)
    echo 1.0.0  | echo 'sunny' x2
    syn         ✗ start failed at hello: the new process exited with code 1 before serving
    syn         |   File "main.py", line 3

It reads the daemon's :class:`~orchestrator._daemon.tap.Tap` on a thread of
its own, so a slow terminal never holds up the daemon's loop (the tap drops
what the terminal cannot take, and this says how much). Once the daemon has
stopped, :meth:`ForegroundView.close` says what the shutdown stopped.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from .format import plain

if TYPE_CHECKING:
    from ipc import Event

    from .._daemon.tap import Line, Tap

COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)  # ANSI: cyan, yellow, green, ...
DAEMON = "zskilld"


def describe(kind: str, data: Mapping[str, Any]) -> str | None:
    """An event in a few words, or None for one the view leaves out."""
    d = {k: plain(v) for k, v in data.items()}
    match kind:
        case "spawn":
            return f"● spawned (pid {d.get('pid')})"
        case "ready":
            return f"● ready (pid {d.get('pid')})"
        case "exit":
            return f"● {d.get('how')}" + ("" if data.get("expected") else " (unexpected)")
        case "stopping" | "stopped" | "restart" | "unresponsive":
            why = d.get("reason", "")
            return f"● {kind}" + (f" ({why})" if why and why != "requested" else "")
        case "backoff":  # why was just said, by the failed step or the exit
            return f"● backing off: next try in {d.get('delay_s')} s"
        case "errored":
            return f"✗ errored: {d.get('last_exit')}"
        case "rollout":
            if data.get("status") != "failed":
                return None  # the steps that went well: the outcome says it
            return f"✗ {d.get('op')} failed at {d.get('step')}: {d.get('detail')}"
        case "deployed":
            old, new = d.get("old_version"), d.get("new_version")
            return f"▲ {d.get('op')} {old} -> {new}" if old else f"▲ {d.get('op')}ed {new}"
        case "rolled_back":
            return None  # the failed step said why
        case "tools_changed":
            signs = (("+", "added"), ("-", "removed"), ("~", "changed"))
            parts = [f"{sign}{','.join(data.get(k) or [])}" for sign, k in signs if data.get(k)]
            return "● tools changed: " + " ".join(parts)
        case "reload":
            if not data.get("ok"):
                return f"✗ reload refused, nothing changed: {d.get('error')}"
            return f"● config reloaded: {d.get('summary')}"
        case "removed":
            return "● removed from the config"
        case "changed":  # watch mode
            if data.get("error"):
                return f"✗ watch: {d.get('error')}"
            files = [str(f) for f in data.get("files") or []]
            more = int(data.get("count") or 0) - len(files)
            return (
                f"● changed: {', '.join(files)}"
                + (f" and {more} more" if more > 0 else "")
                + "; upgrading"
            )
        case "daemon.start":
            return f"● serving {d.get('config')} (pid {d.get('pid')})"
        case "daemon.stop":
            return "● shutting down: every skill drains, then stops"
    return "● " + " ".join([kind, *(f"{k}={v}" for k, v in d.items() if v)])


class ForegroundView:
    def __init__(self, tap: Tap, out: IO[str] | None = None, *, color: bool | None = None) -> None:
        self.tap = tap
        self.out = out if out is not None else sys.stdout
        if color is None:
            color = self.out.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        self._colours: dict[str, int] = {}
        self._width = len(DAEMON)
        self._versions: dict[str, str] = {}  # the version each skill serves
        self._serving: dict[str, tuple[str, int]] = {}  # skill -> (version, pid) ready
        self.stopped: list[str] = []  # what the shutdown stopped: "echo 1.0.0 (pid 42)"
        self._shutting_down = False
        self._dropped_seen = 0
        self._broken = False  # the terminal went away
        self._thread = threading.Thread(target=self._run, name="zskill-view", daemon=True)

    def start(self) -> ForegroundView:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        """Print what is left in the tap, then stop."""
        self.tap.close(timeout_s)
        self._thread.join(timeout_s)

    # --- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        from ipc import Event

        while not self._broken:
            item = self.tap.get()
            if item is None:
                return
            if self.tap.dropped != self._dropped_seen:
                n, self._dropped_seen = self.tap.dropped - self._dropped_seen, self.tap.dropped
                self._write(DAEMON, "", f"… {n} lines not shown (the terminal fell behind)")
            if isinstance(item, Event):
                self._event(item)
            else:
                self._line(item)

    def _event(self, ev: Event) -> None:
        data = ev.data if isinstance(ev.data, Mapping) else {}
        skill = ev.skill or DAEMON
        version = str(data.get("version") or data.get("new_version") or "")
        if ev.type == "ready":
            self._versions[skill] = version
            self._serving[skill] = (version, int(data.get("pid") or 0))
        elif ev.type == "daemon.stop":
            self._shutting_down = True
        elif ev.type == "exit" and self._shutting_down:
            served = self._serving.pop(skill, None)
            if served is not None and served[1] == data.get("pid"):
                self.stopped.append(f"{skill} {served[0]} (pid {served[1]})")
        text = describe(ev.type, data)
        if text is not None:
            self._write(skill, version, text)

    def _line(self, line: Line) -> None:
        self._write(line.skill, line.version, f"| {line.text}")

    def _write(self, skill: str, version: str, text: str) -> None:
        label = f"{skill} {version}".rstrip()
        self._width = max(self._width, len(label))
        prefix = label.ljust(self._width)
        if self.color:
            code = self._colours.setdefault(skill, COLOURS[len(self._colours) % len(COLOURS)])
            prefix = f"\x1b[{code}m{prefix}\x1b[0m"
        try:
            self.out.write(f"{prefix}  {text}\n")
            self.out.flush()
        except (OSError, ValueError):
            self._broken = True  # the terminal is gone; the daemon runs on


__all__ = ["ForegroundView", "describe"]
