"""__SKILL_NAME__: a zskill skill.

Run it under the daemon (``zskill up``), call it with
``zskill call __SKILL_NAME__ echo --json '{"text": "hi"}'``, edit this file and
``zskill upgrade __SKILL_NAME__`` to swap the new code in while it serves.
"""

from skills import Skill

skill = Skill("__SKILL_NAME__", version="0.1.0")


@skill.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat text, separated by spaces."""
    return " ".join([text] * times)


@skill.health
def healthy() -> bool:
    """Checked before an upgrade switches traffic here: return False to refuse."""
    return True


if __name__ == "__main__":
    skill.run()
