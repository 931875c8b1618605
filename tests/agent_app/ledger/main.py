"""ledger: a test skill whose one tool has a side effect that must happen
once: each call appends a line to LEDGER_FILE (not idempotent)."""

import os
import time

from skills import Skill

skill = Skill("ledger", version=os.environ.get("LEDGER_VERSION", "1.0.0"))


@skill.tool()
def record(step: int, task: str = "") -> str:
    """Write one line for this step to the ledger file.

    Args:
        step: the agent's step number.
        task: the task's id.
    """
    time.sleep(float(os.environ.get("LEDGER_DELAY_S", "0")))
    with open(os.environ["LEDGER_FILE"], "a") as f:
        f.write(f"{step} {skill.version} {task}\n")
        f.flush()
        os.fsync(f.fileno())
    return f"recorded {step} on {skill.version}"


@skill.tool()
def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


if __name__ == "__main__":
    skill.run()
