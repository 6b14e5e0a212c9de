"""Shared fixtures: unique LSL identities, polling helper, session root."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@pytest.fixture
def uid() -> str:
    """A unique token for stream names and source ids, so tests never see each other."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def session_root(tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    return root
