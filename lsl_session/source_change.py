"""How a ``stream_source_changed`` event reads (recorder, verdict; no liblsl here)."""

from __future__ import annotations

from typing import Any


def describe_change(change: dict[str, Any]) -> str:
    """One line for the log and the terminal."""
    what = (
        "restarted"
        if change["restart"]
        else (
            f"changed source: uid {change['old_uid']} on {change['old_host']}"
            f" -> uid {change['new_uid']} on {change['new_host']}"
        )
    )
    if change["restart"]:
        what += f" (uid {change['old_uid']} -> {change['new_uid']})"
    jump = change.get("discontinuity")
    if jump is not None:
        kind = "gap" if jump["kind"] == "gap" else "backward jump"
        what += f"; stamps: {kind} of {abs(jump['step_s']):.3f} s"
        if jump["samples_lost"]:
            what += f" ({jump['samples_lost']} samples)"
    return f"stream {change['stream']}: {what}"
