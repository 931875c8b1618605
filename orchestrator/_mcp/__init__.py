"""``zskill mcp``: every skill's tools served to MCP hosts over stdio.

``bridge`` runs the MCP server on the async client; ``catalog`` turns the
daemon's tool lists into MCP tools; ``results`` turns call outcomes into MCP
results. Never imports the daemon.
"""
