"""Pairing URLs: the page address with the device id and token in the fragment.

The fragment (after ``#``) never leaves the phone's browser in a request, so the
token is never in a server log; it is printed once, as text and as a QR code.
"""

from __future__ import annotations

import io
import urllib.parse
from typing import Any


def pairing_url(base: str, device_id: str, token: str | None) -> str:
    """``base#device=…&token=…`` (``base`` is ``https://host:port/``)."""
    fields = {"device": device_id}
    if token:
        fields["token"] = token
    return f"{base}#{urllib.parse.urlencode(fields)}"


def qr_text(url: str) -> str:
    """The URL as a QR code drawn with terminal block characters."""
    import segno

    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def pairing_lines(front: Any, tokens: dict[str, str] | None) -> list[str]:
    """Where phones open the page: one URL (and QR code) per device of ``tokens``."""
    from outlets.phone.web.cert import lan_address

    address = front.host if front.host not in ("0.0.0.0", "::") else lan_address()
    base = f"{front.scheme}://{address}:{front.port}/"
    lines = [f"phone page: {base}"]
    if front.scheme == "https":
        lines.append(
            "  (self-signed certificate: each phone accepts it once for this address)"
        )
    for device_id, token in (tokens or {"phone_1": ""}).items():
        url = pairing_url(base, device_id, token or None)
        lines += [f"pair {device_id}: {url}", qr_text(url)]
    return lines
