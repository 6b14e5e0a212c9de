"""Bounds of the phone relay: every buffer, table and log a peer can grow (pure).

Each bound is per connection or per relay as its name says; the list for phone
developers is in ``docs/phone-protocol.md`` ("Limits and error codes"). Nothing
here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Longest error text sent, printed or logged (characters).
MAX_TEXT = 200
#: Longest optional hello string kept (``model``, ``manufacturer``, ``app_version``).
MAX_HELLO_STRING = 64
#: Optional hello strings the relay keeps; every other unknown field is ignored.
HELLO_STRINGS = ("model", "manufacturer", "app_version")
#: Heartbeat status fields kept, with their allowed closed range (bool: any bool).
HEARTBEAT_FIELDS: dict[str, tuple[float, float] | None] = {
    "battery": (0.0, 1.0),
    "storage_free_mb": (0.0, 1e9),
    "temperature_c": (-100.0, 200.0),
    "recording": None,
}

#: Fixed error texts before authentication: nothing the peer sent is echoed.
PREAUTH_TEXT = {
    "bad_frame": "not a frame of this protocol, or longer than the hello limit",
    "bad_json": "the hello is not a JSON object",
    "bad_message": "the hello has a missing or invalid field",
    "unknown_type": "the first message must be 'hello'",
    "hello_required": "the first message must be 'hello'",
    "hello_timeout": "no hello received in time",
    "unsupported_version": "protocol version not supported; use 1",
    "bad_device_id": "device id must be 1-64 characters of [A-Za-z0-9_-]",
    "auth_failed": "unknown device id or wrong token",
    "busy": "too many connections; retry later",
}


@dataclass(frozen=True)
class RelayLimits:
    """Every bound of a `PhoneRelay` (defaults are the documented ones).

    Attributes
    ----------
    max_connections : int
        Open sockets per relay (pre- and post-authentication); more get ``busy``.
    max_preauth_per_host : int
        Connections from one IP address that have not authenticated yet.
    max_preauth : int
        Connections that have not authenticated yet, all addresses together;
        the other ``max_connections - max_preauth`` are held for authenticated
        phones. When full, a newcomer from an address holding at least two fewer
        pre-auth connections than the largest holder replaces that holder's
        oldest one (see ``outlets/phone/listener.py``).
    preauth_control_rate, preauth_control_burst : float, int
        WebSocket control frames (ping/pong) read per second and in a burst from
        a connection that has not authenticated yet; beyond, the relay stops
        reading that socket until the budget refills (nothing is queued).
    control_rate, control_burst : float, int
        The same for an authenticated WebSocket phone.
    preauth_max_frame : int
        Largest frame before authentication (the hello), bytes.
    read_buffer : int
        Stream reader limit, bytes; the reader stops reading the socket once
        it holds twice this beyond the frame being read.
    max_pending_batches, max_pending_bytes : int
        Sample batches/bytes held per connection before the first clock fit.
    max_uploads_per_device : int
        Uploads in progress per device id (each holds one open ``.part``).
    max_parts_per_device : int
        Unowned ``.part`` files kept per device folder for resuming (oldest go).
    part_max_age_s : float
        Unowned ``.part`` files not written for this long are deleted.
    error_burst, error_window_s : int, float
        Per (code, peer host): errors logged per window; the rest are counted
        and summarised in one summary ``error`` event per code and window.
    error_total : int
        Error entries logged per window per relay, all codes and hosts together.
    max_limiter_keys : int
        Hosts/keys the rate limiters and the auth throttle remember.
    auth_free_failures : int
        Failed hellos per host (IPv6: per /64) and window answered at once;
        later ones wait.
    auth_free_failures_total : int
        The same over all hosts together.
    auth_window_s : float
        Window of the failed-hello count.
    auth_delay_s, auth_max_delay_s : float
        First and largest wait before an ``auth_failed`` reply (doubling).
    past_window_s, future_window_s : float
        Plausible sample times: mapped LSL time within
        [now - past_window_s, now + future_window_s] of the relay clock.
    """

    max_connections: int = 64
    max_preauth_per_host: int = 8
    max_preauth: int = 32
    preauth_control_rate: float = 2.0
    preauth_control_burst: int = 4
    control_rate: float = 50.0
    control_burst: int = 50
    preauth_max_frame: int = 8 * 1024
    read_buffer: int = 64 * 1024
    max_pending_batches: int = 1024
    max_pending_bytes: int = 8 * 1024 * 1024
    max_uploads_per_device: int = 4
    max_parts_per_device: int = 16
    part_max_age_s: float = 6 * 3600.0
    error_burst: int = 5
    error_window_s: float = 10.0
    error_total: int = 20
    max_limiter_keys: int = 1024
    auth_free_failures: int = 3
    auth_free_failures_total: int = 30
    auth_window_s: float = 60.0
    auth_delay_s: float = 0.5
    auth_max_delay_s: float = 5.0
    past_window_s: float = 600.0
    future_window_s: float = 5.0


def cut(value: object, n: int = MAX_TEXT) -> str:
    """Return a short, safe text for any value: strings cut, containers by type.

    Never calls ``str`` on containers (unbounded cost, recursion) nor on huge
    integers (``ValueError`` beyond 4300 digits).
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, int):
        text = str(value) if value.bit_length() <= 256 else "<huge int>"
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[: n - 1] + "…"


def clean_hello_string(value: object) -> str | None:
    """Return a printable ``value`` cut to `MAX_HELLO_STRING`, or None if not a str."""
    if not isinstance(value, str):
        return None
    printable = "".join(c for c in value[: MAX_HELLO_STRING * 4] if c.isprintable())
    return printable[:MAX_HELLO_STRING]


def clean_heartbeat(fields: dict[str, object]) -> dict[str, float | bool]:
    """Return the whitelisted, in-range heartbeat status fields of ``fields``."""
    out: dict[str, float | bool] = {}
    for key, bounds in HEARTBEAT_FIELDS.items():
        value = fields.get(key)
        if bounds is None:
            if isinstance(value, bool):
                out[key] = value
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (isinstance(value, float) or value.bit_length() < 64)
            and bounds[0] <= value <= bounds[1]
        ):
            out[key] = float(value)
    return out
