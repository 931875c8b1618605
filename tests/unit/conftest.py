"""Fixtures shared by the SDK's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skills._mailbox import Mailbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.close()
