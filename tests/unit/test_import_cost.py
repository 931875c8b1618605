"""``import orchestrator`` stays cheap: the clients, pydantic, psutil,
asyncio, pyzmq and msgpack load only when a name that needs them is first used; the threaded
Client never loads asyncio, nor pydantic unless it has a config to read."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("orchestrator._client", "orchestrator._daemon", "pydantic", "psutil", "asyncio")


def loaded_after(code: str) -> list[str]:
    """The heavy modules loaded once ``code`` has run in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"heavy = {HEAVY!r} + ('zmq.asyncio',)\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if any(m == h or m.startswith(h + '.') for h in heavy))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    found: list[str] = json.loads(out.stdout)
    return found


def test_import_orchestrator_loads_none_of_them() -> None:
    assert loaded_after("import orchestrator") == []
    assert loaded_after("from orchestrator import ZskillError, DaemonUnavailable") == []


def test_the_error_classes_load_neither_pyzmq_nor_msgpack() -> None:
    # ipc's codec and socket helpers load on first use (ipc.__getattr__).
    probe = (
        "import orchestrator, sys\n"
        "print(sorted(m for m in ('zmq', 'msgpack') if m in sys.modules))\n"
        "import ipc; ipc.encode, ipc.send_frames\n"
        "print(sorted(m for m in ('zmq', 'msgpack') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    assert out.stdout.splitlines() == ["[]", "['msgpack', 'zmq']"]


def test_client_loads_the_sync_client_without_asyncio() -> None:
    loaded = loaded_after("import orchestrator; orchestrator.Client")
    assert "orchestrator._client.sync" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "asyncio" or m == "zmq.asyncio"]
    assert "orchestrator._client.aio" not in loaded


def test_a_client_on_a_run_dir_reads_no_config() -> None:
    # pydantic is for reading zskill.toml; a client given a run dir has none to read.
    probe = "import orchestrator; orchestrator.Client.from_run_dir('/tmp/zs-probe').close()"
    loaded = loaded_after(probe)
    assert "orchestrator._client.sync" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "pydantic"]


def test_async_client_loads_asyncio() -> None:
    loaded = loaded_after("from orchestrator import AsyncClient")
    assert {"orchestrator._client.aio", "asyncio", "zmq.asyncio"} <= set(loaded)


def test_every_public_name_resolves_and_is_listed() -> None:
    import orchestrator

    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
        assert name in dir(orchestrator)
    assert orchestrator.load_config is orchestrator._config.load


def test_the_testing_module_does_not_import_the_daemon() -> None:
    tree = ast.parse((ROOT / "orchestrator" / "testing.py").read_text(encoding="utf-8"))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not [m for m in imported if "_daemon" in m]
    assert loaded_after("import orchestrator.testing") == []


def test_opentelemetry_loads_only_for_a_call_that_brings_a_trace_context() -> None:
    # Installed (the otel extra) or not, neither the SDK, the daemon nor a
    # client loads it; a skill does for the first call with a traceparent.
    probe = (
        "import sys\n"
        "import skills, orchestrator, orchestrator._daemon.loop\n"
        "from orchestrator import Client\n"
        "from skills._trace import CallTracing\n"
        "t = CallTracing('s', '1.0', 's-1')\n"
        "with t.span('tool', None): pass\n"
        "print('opentelemetry' in sys.modules)\n"
        "with t.span('tool', '00-' + '1' * 32 + '-' + '2' * 16 + '-01'): pass\n"
        "print('opentelemetry.trace' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    installed = importlib.util.find_spec("opentelemetry") is not None
    assert out.stdout.split() == ["False", str(installed)]
