"""Checks on a phone's ``hello``: token, protocol version, device id, capabilities.

The token is checked first and no error text quotes the hello, so nothing a
peer sends is echoed or logged before it has authenticated.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from lsl_session import layout
from lsl_session.errors import InvalidNameError
from outlets.phone import protocol as P
from outlets.phone.limits import HELLO_STRINGS, PREAUTH_TEXT, clean_hello_string
from outlets.phone.protocol import Message, ProtocolError

CAPABILITIES = ("rgb_video", "thermal_video", "gsr_data", "motion_data")
#: Capabilities a phone may name but does not get by default (the web page's).
OPTIONAL_CAPABILITIES = ("orientation_data",)


def _fail(code: str) -> ProtocolError:
    return ProtocolError(code, PREAUTH_TEXT[code], fatal=True)


def validate_hello(msg: Message, tokens: Mapping[str, str] | None) -> list[str]:
    """Accept a ``hello`` or raise a fatal :class:`ProtocolError`.

    Parameters
    ----------
    msg : Message
        The phone's first message.
    tokens : mapping of str to str | None
        Device id to token; None accepts any device without a token.

    Returns
    -------
    list of str
        The phone's capabilities (all of them when it names none).

    Raises
    ------
    ProtocolError
        ``auth_failed``, ``unsupported_version``, ``bad_device_id`` or
        ``bad_message``, always fatal, with a fixed text.
    """
    device_id = msg.get("device_id")
    if tokens is not None:
        expected = tokens.get(device_id) if isinstance(device_id, str) else None
        token = msg.get("token")
        # constant-time comparison: the token is the only secret on this port
        if (
            expected is None
            or not isinstance(token, str)
            or not hmac.compare_digest(expected.encode(), token.encode())
        ):
            raise _fail("auth_failed")
    if msg.get("protocol") not in P.SUPPORTED_VERSIONS:
        raise _fail("unsupported_version")
    try:
        layout.validate_device_id(device_id)
    except InvalidNameError:
        raise _fail("bad_device_id") from None
    caps = msg.get("capabilities", list(CAPABILITIES))
    known = CAPABILITIES + OPTIONAL_CAPABILITIES
    if not isinstance(caps, list) or not all(
        isinstance(c, str) and c in known for c in caps
    ):
        raise ProtocolError(
            "bad_message",
            f"capabilities must be a subset of {list(known)}",
            fatal=True,
        )
    validate_rates(msg.get("rates"))
    return list(dict.fromkeys(caps))


#: Highest sensor rate a phone may declare (Hz).
MAX_DECLARED_RATE = 10_000.0


def validate_rates(rates: Any) -> dict[str, float]:
    """Check a hello's optional ``rates``: numeric stream key → Hz in (0, 10000].

    Raises
    ------
    ProtocolError
        ``bad_message`` (fatal) for anything else.
    """
    if rates is None:
        return {}
    ok = isinstance(rates, dict) and all(
        key in P.NUMERIC_STREAMS
        and isinstance(hz, int | float)
        and not isinstance(hz, bool)
        and 0 < hz <= MAX_DECLARED_RATE
        for key, hz in rates.items()
    )
    if not ok:
        raise ProtocolError(
            "bad_message",
            f"rates must map streams of {list(P.NUMERIC_STREAMS)} to Hz in"
            f" (0, {MAX_DECLARED_RATE:g}]",
            fatal=True,
        )
    return {key: float(hz) for key, hz in rates.items()}


def hello_info(msg: Message, capabilities: list[str]) -> dict[str, Any]:
    """Return the hello fields the relay keeps: whitelisted and cut short.

    The token and unknown fields are dropped; ``model``, ``manufacturer`` and
    ``app_version`` are kept only as printable strings of at most 64 characters.
    """
    info: dict[str, Any] = {
        "protocol": msg.get("protocol"),
        "device_id": msg.get("device_id"),
        "capabilities": capabilities,
    }
    rates = validate_rates(msg.get("rates"))
    if rates:
        info["rates"] = rates
    for key in HELLO_STRINGS:
        value = clean_hello_string(msg.get(key))
        if value is not None:
            info[key] = value
    return info
