"""Pairing URLs: the page address with the device id and token in the fragment.

The fragment (after ``#``) never leaves the phone's browser in a request, so the
token is never in a server log; it is printed once, as text and as a QR code.
"""

from __future__ import annotations

import io
import urllib.parse


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
