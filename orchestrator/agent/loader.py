"""``module:attribute`` to a ``DurableAgent``, as uvicorn loads ``module:app``.

The attribute may be a pydantic-ai ``Agent`` (wrapped here) or a
``DurableAgent``. The module is looked up from the current directory and the
config file's directory. The loop version, unless the config, ZSKILL_LOOP_VERSION or the
``DurableAgent`` sets one, is a hash of the module's source: editing the
agent and running it again (or ``zskill agent upgrade``) is a new version.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AgentNotFound

if TYPE_CHECKING:
    from .._config import Config
    from .durable import DurableAgent

__all__ = ["load_agent", "source_version"]


def load_agent(spec: str, config: Config) -> DurableAgent:
    from pydantic_ai import Agent

    from .durable import DurableAgent

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AgentNotFound(f"{spec!r}: expected MODULE:ATTRIBUTE, e.g. myagent:agent")
    for where in (str(config.base_dir), str(Path.cwd())):
        if where not in sys.path:
            sys.path.insert(0, where)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AgentNotFound(f"{spec!r}: no module named {module_name!r}") from exc
        raise AgentNotFound(f"{spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise AgentNotFound(f"{spec!r}: importing {module_name} failed: {exc!r}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentNotFound(f"{spec!r}: module {module_name} has no {attr!r}") from None
    if isinstance(obj, DurableAgent):
        return obj
    if isinstance(obj, Agent):
        return DurableAgent(
            obj,
            config,
            version=config.agent.version
            or os.environ.get("ZSKILL_LOOP_VERSION")
            or source_version(module),
            import_string=spec,
        )
    raise AgentNotFound(f"{spec!r} is a {type(obj).__name__}, not a pydantic-ai Agent")


def source_version(module: Any) -> str:
    """A short hash of ``module``'s source file."""
    path = getattr(module, "__file__", None)
    if not path:
        return "1"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]
