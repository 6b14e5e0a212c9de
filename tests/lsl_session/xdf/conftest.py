"""Fixtures of the XDF tests."""

from __future__ import annotations

import pytest
from xdf_helpers import build_recording


@pytest.fixture(scope="session")
def recording() -> bytes:
    return build_recording()
