"""Checks on a phone's ``hello``: protocol version, device id, token, capabilities."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from lsl_session import layout
from lsl_session.errors import InvalidNameError
from outlets.phone import protocol as P
from outlets.phone.protocol import Message, ProtocolError

CAPABILITIES = ("rgb_video", "thermal_video", "gsr_data", "motion_data")


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
    """
    version = msg.get("protocol")
    if version not in P.SUPPORTED_VERSIONS:
        raise ProtocolError(
            "unsupported_version",
            f"protocol {version!r} not supported; use {list(P.SUPPORTED_VERSIONS)}",
            fatal=True,
        )
    device_id = msg.get("device_id")
    try:
        layout.validate_device_id(device_id)
    except InvalidNameError as exc:
        raise ProtocolError("bad_device_id", str(exc), fatal=True) from None
    if tokens is not None:
        expected = tokens.get(device_id)
        token = msg.get("token")
        # constant-time comparison: the token is the only secret on this port
        if (
            expected is None
            or not isinstance(token, str)
            or not hmac.compare_digest(expected.encode(), token.encode())
        ):
            raise ProtocolError(
                "auth_failed",
                f"unknown device {device_id!r} or wrong token",
                fatal=True,
            )
    caps = msg.get("capabilities", list(CAPABILITIES))
    if not isinstance(caps, list) or not all(c in CAPABILITIES for c in caps):
        raise ProtocolError(
            "bad_message",
            f"capabilities must be a subset of {list(CAPABILITIES)}",
            fatal=True,
        )
    return caps
