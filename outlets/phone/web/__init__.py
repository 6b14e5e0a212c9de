"""Any phone, no app: the relay serves a page that streams a phone's browser over WebSocket.

The page speaks the relay's protocol (docs/phone-protocol.md) over a WebSocket:
one WebSocket message is one protocol frame's payload. `bridge` turns the
WebSocket into the framed byte stream the TCP `Connection` reads, so both paths
share every check and limit.
"""

from outlets.phone.web.server import WebFront

__all__ = ["WebFront"]
