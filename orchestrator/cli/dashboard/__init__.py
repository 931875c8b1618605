"""``zskill dashboard``: a live terminal view of every skill's health.

``app`` holds the model fed by the daemon (status, events, log tails),
``view`` renders it with rich, ``keyboard`` reads keys from the terminal.
"""
