from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests import the helpers module by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir() -> Iterator[None]:
    """`zskill up` notes which run dir serves a config (cli/served.py) under
    $XDG_STATE_HOME; the tests' daemons note theirs in a dir of their own."""
    state = tempfile.mkdtemp(prefix="zst", dir="/tmp")
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = state
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old
    shutil.rmtree(state, ignore_errors=True)
