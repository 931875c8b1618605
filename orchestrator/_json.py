"""JSON for values that came over msgpack: one ``default`` for ``json.dumps``,
shared by the CLI's ``--json`` output and the MCP bridge's results."""

from __future__ import annotations

import base64
from typing import Any


def json_default(value: Any) -> Any:
    """For ``json.dumps(default=...)``: what msgpack carries and JSON cannot."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)
