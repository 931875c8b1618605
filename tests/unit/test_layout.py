"""The architecture as a test: which package may import which.

- ``ipc`` (the wire protocol) imports neither ``orchestrator`` nor ``skills``;
- ``skills`` (the SDK) never imports ``orchestrator``;
- ``orchestrator._daemon`` never imports the clients, the CLI or the MCP bridge;
- ``orchestrator._client`` never imports the daemon (nor the CLI or MCP bridge);
- ``orchestrator.testing``, the fake daemon users test against, is no daemon.

Every import counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LONG_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from pkg import submodule` imports pkg.submodule.
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def _sources(package: str) -> list[Path]:
    base = ROOT / package.replace(".", "/")
    if base.with_suffix(".py").is_file():  # a module, not a package
        return [base.with_suffix(".py")]
    return sorted(p for p in base.rglob("*.py") if "examples" not in p.parts)


RULES = [
    ("ipc", ("orchestrator", "skills")),
    ("skills", ("orchestrator",)),
    (
        "orchestrator._daemon",
        ("orchestrator._client", "orchestrator.cli", "orchestrator._mcp", "orchestrator.testing"),
    ),
    ("orchestrator._client", ("orchestrator._daemon", "orchestrator.cli", "orchestrator._mcp")),
    ("orchestrator._mcp", ("orchestrator._daemon", "orchestrator.cli")),
    ("orchestrator.testing", ("orchestrator._daemon", "orchestrator.cli", "orchestrator._mcp")),
    # The agent loop is an extra: a client of the daemon, used by nothing in the core.
    ("orchestrator.agent", ("orchestrator._daemon", "orchestrator.cli")),
]


def _forbidden(importer: str, banned: tuple[str, ...]) -> list[tuple[str, str]]:
    bad = []
    for path in _sources(importer):
        for mod in _imports(path):
            if any(mod == b or mod.startswith(b + ".") for b in banned):
                bad.append((str(path.relative_to(ROOT)), mod))
    return sorted(set(bad))


@pytest.mark.parametrize(("importer", "banned"), RULES, ids=[r[0] for r in RULES])
def test_import_rules(importer: str, banned: tuple[str, ...]) -> None:
    assert _sources(importer), f"no sources found for {importer}"
    assert _forbidden(importer, banned) == []


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a relative import that climbs out of a package is
    resolved to the absolute module it names."""
    pkg = ROOT / "orchestrator" / "_client"
    path = pkg / "common.py"
    tree_imports = _imports(path)
    assert "orchestrator._config" in tree_imports  # `from .._config import ...`
    assert "ipc" in tree_imports


def test_long_modules_say_why() -> None:
    """A module over ~400 lines is usually two things; one that is not says
    why at its top (a line starting "Why this module is long")."""
    unexplained = []
    for package in ("ipc", "orchestrator", "skills"):
        for path in _sources(package):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > LONG_MODULE_LINES:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "Why this module is long" not in doc:
                    unexplained.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert unexplained == []
