"""lsl_session: session-based Lab Streaming Layer acquisition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lsl_session.events import SessionLogger
    from lsl_session.manager import SessionManager
    from lsl_session.processing.session_data import load_session

__all__ = ["SessionLogger", "SessionManager", "__version__", "load_session"]

# imported when first asked for: a process that only records (or only reads XDF)
# does not pay for the session manager, and load_session pulls in pandas/pyarrow
_LAZY = {
    "SessionLogger": "lsl_session.events",
    "SessionManager": "lsl_session.manager",
    "load_session": "lsl_session.processing.session_data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsl_session' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
