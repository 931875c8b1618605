"""A skill's ``env_file``: variables kept out of zskill.toml (an API key).

The file is read again whenever a process of the skill starts (start,
restart, upgrade, a restart after a crash, and ``zskill reload``), so a key
rotated in the file reaches the skill by ``zskill restart`` or ``zskill
reload`` alone. Its values are secrets: nothing here ever puts one in an
error message, and the daemon keeps only a digest of them (to tell a
changed file at reload), never the values.

The format is the common ``.env`` one, one variable a line::

    # a comment
    API_KEY=abc123
    export REGION=eu-west-1        # "export " is allowed and ignored
    GREETING="hello world"         # double quotes: \\n \\t \\" \\\\ are escapes
    RAW='no $escapes here'         # single quotes: taken as written
    EMPTY=

An unquoted value ends at `` #`` (a comment) and is stripped. No variable
expansion: ``$HOME`` stays as written. A variable given both here and in
the skill's ``env`` table takes the ``env`` table's value.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ipc import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_env_file(path: Path) -> dict[str, str]:
    """The variables in ``path``; ConfigError naming the file and line (never
    a value) when it cannot be read or a line is not ``NAME=value``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env_file {path}: no such file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"env_file {path}: cannot read: {exc.strerror}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"env_file {path}: not UTF-8 text", file=str(path)) from exc
    return parse_env(text, path)


def parse_env(text: str, path: Path) -> dict[str, str]:
    """``text`` in the ``.env`` format; ``path`` names it in errors."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, eq, rest = line.partition("=")
        name = name.strip()
        if not eq or not _NAME.match(name):
            # Nothing of the line is shown: it may be a secret (a value
            # pasted without its name).
            raise ConfigError(
                f"env_file {path}, line {n}: expected NAME=value", file=str(path), line=n
            )
        value = _value(rest.strip())
        if value is None:
            raise ConfigError(
                f"env_file {path}, line {n} ({name}): a quoted value is not closed",
                file=str(path),
                line=n,
            )
        out[name] = value
    return out


def _value(rest: str) -> str | None:
    """The value after ``=``; None when a quote is not closed."""
    if rest[:1] == "'":
        end = rest.find("'", 1)
        return None if end < 0 else rest[1:end]
    if rest[:1] == '"':
        chars: list[str] = []
        i = 1
        while i < len(rest):
            c = rest[i]
            if c == "\\" and i + 1 < len(rest):
                nxt = rest[i + 1]
                chars.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                return "".join(chars)
            chars.append(c)
            i += 1
        return None
    comment = re.search(r"\s#", rest)
    return (rest[: comment.start()] if comment else rest).strip()


def env_digest(values: dict[str, str]) -> str:
    """A digest of ``values``: tells a changed file without keeping its secrets."""
    h = hashlib.sha256()
    for name in sorted(values):
        h.update(name.encode() + b"\0" + values[name].encode() + b"\0")
    return h.hexdigest()


__all__ = ["env_digest", "parse_env", "read_env_file"]
