"""lsl_session: session-based Lab Streaming Layer acquisition."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from lsl_session.events import SessionLogger
from lsl_session.manager import SessionManager

__all__ = ["SessionLogger", "SessionManager", "__version__", "load_session"]


def __getattr__(name: str) -> Any:
    # load_session pulls in pandas/pyarrow; import it only when asked for
    if name == "load_session":
        from lsl_session.processing.session_data import load_session

        return load_session
    raise AttributeError(f"module 'lsl_session' has no attribute {name!r}")
