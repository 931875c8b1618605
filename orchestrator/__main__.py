"""``python -m orchestrator``: the ``zskill`` command line."""

from orchestrator.cli import main

if __name__ == "__main__":
    main()
