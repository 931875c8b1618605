"""The agent loop's own errors, under zskill's one root::

    ZskillError
     └── AgentError            the loop could not do what was asked
          ├── AgentNotFound    an import string that does not resolve to an agent
          ├── DatabaseError    a database URL that is wrong or cannot be reached
          ├── TaskNotFound     no task has this id
          └── TaskFailed       the task ended in an error (or was cancelled)

The CLI maps AgentNotFound, DatabaseError and TaskNotFound to exit 2 (bad
input) and TaskFailed to exit 1.
"""

from __future__ import annotations

from ipc import ZskillError

__all__ = ["AgentError", "AgentNotFound", "DatabaseError", "TaskFailed", "TaskNotFound"]


class AgentError(ZskillError):
    pass


class AgentNotFound(AgentError):
    pass


class DatabaseError(AgentError):
    pass


class TaskNotFound(AgentError):
    pass


class TaskFailed(AgentError):
    pass
