"""The ``zskill`` commands, one module per kind of work; :mod:`..app`
registers them in the order ``zskill --help`` lists them.

    daemon   up, down
    skills   list, call, start, stop, restart
    deploy   upgrade, rollback, releases
    observe  logs, events, dashboard
    setup    mcp, new, keys

Each module imports typer and the standard library only; a command imports
what it needs (the client, the config loader, rich, the daemon) in its body.
"""
