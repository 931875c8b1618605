"""zskilld, the daemon: the one thread that owns every skill's state.

Only ``zskill up`` imports this package; clients, the CLI's other commands
and the MCP bridge never do. What lives here, from the outside in:

- ``loop``: the poller, signals, the tick, the numbered shutdown;
- ``sockets``: the control, workers and events sockets (and tcp+CURVE);
- ``dispatch``: frames from clients and skill processes to typed handlers;
- ``control``: the control API (list, upgrade, stop, ...);
- ``lifecycle``: start, stop, restart, upgrade, rollback, the restart policy
  carried out (its decisions in ``restart_policy``);
- ``runner``: a rollout carried out (its decisions in ``rollout``);
- ``supervisor`` and ``process``: skill processes from spawn to reap;
  ``runtime``: what is held per process and per skill;
- ``router``: calls queued, dispatched by credit, answered exactly once;
- ``jobs``: work kept off the daemon's thread (copying and hashing releases);
- ``memory``: ``memory_limit`` carried out (a zero-downtime replacement);
- ``releases``, ``events``, ``logfiles``, ``stats``, ``metrics``: what the
  daemon keeps and publishes.

Who calls whom (no callback is set after construction)::

    Daemon ─> Dispatcher ─> Router, ControlServer, Lifecycle
    Lifecycle owns Supervisor (listener: the Lifecycle)
               and RolloutRunner (listener: the Lifecycle)
"""
