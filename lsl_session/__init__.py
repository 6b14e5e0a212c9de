"""lsl_session: session-based Lab Streaming Layer acquisition."""

from __future__ import annotations

__version__ = "0.1.0"
