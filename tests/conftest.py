"""Shared fixtures: unique LSL identities, polling helper, session root."""

from __future__ import annotations

import uuid

import pytest
from lsl_helpers import wait_until  # noqa: F401 - re-exported for tests


@pytest.fixture
def uid() -> str:
    """A unique token for stream names and source ids, so tests never see each other."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def session_root(tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    return root
