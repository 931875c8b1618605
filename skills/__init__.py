"""zskill's skill SDK: write a skill as a plain Python program.

A skill is this small::

    from skills import Skill

    skill = Skill("echo", version="1.0.0")

    @skill.tool()
    def say(text: str, times: int = 1) -> str:
        \"\"\"Repeat text.\"\"\"
        return " ".join([text] * times)

    @skill.health
    def healthy() -> bool:
        return True

    if __name__ == "__main__":
        skill.run()

Arguments' JSON Schema comes from the type hints, descriptions from the
docstring (first paragraph; a Google-style ``Args:`` section for each
argument). Handlers may be ``def`` (run on a thread pool) or ``async def``
(run on an event loop). A handler that raises answers its call with a remote
error; raising :class:`InvalidArguments` (or any :class:`ZskillError`)
sends that error type instead. A parameter annotated :class:`Context`
receives the call's context: progress updates for the caller, whether the
caller cancelled the call, its deadline and session (see ``skills._context``).
``skill.run()`` only works under the daemon (``zskill up``), which starts the
program with what it needs to connect.
"""

from ipc import Cancelled, InvalidArguments, ZskillError

from ._context import Context
from ._skill import Skill

__all__ = ["Cancelled", "Context", "InvalidArguments", "Skill", "ZskillError"]
