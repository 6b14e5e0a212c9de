"""Tests that need a system tool: not run locally (with the install command), failed in CI.

A test that needs chromium, GNU Octave, node + the BIDS validator, root (tmpfs,
network namespaces) or LabRecorder's engine calls `missing` when the tool is
absent: on a developer's machine that is a skip naming the install command; with
``CI=true`` it is a failure, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the run is CI's (``CI=true``, as `.ci/run` sets it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str, install: str) -> NoReturn:
    """Skip (not run) locally, fail in CI: ``what`` is missing, ``install`` adds it."""
    message = f"not run: {what} ({install})"
    if in_ci():
        pytest.fail(f"CI needs {what}: {install}", pytrace=False)
    pytest.skip(message)
