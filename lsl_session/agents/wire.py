"""The agent wire format: JSON lines with a bounded length, HMAC handshake.

Every connection starts with a mutual proof of the lab's shared secret:

1. hub → agent ``{"type": "challenge", "nonce": N1, "version": 1}``
2. agent → hub ``{"type": "hello", "host": H, "role": R, "instance": I,
   "nonce": N2, "mac": HMAC(token, "agent|N1|H|R")}``
3. hub → agent ``{"type": "welcome", "mac": HMAC(token, "hub|N2|H|R")}`` or
   ``{"type": "refused", "reason": …}`` and the connection closes.

The token itself never crosses the wire. ``role`` is ``control`` (one per agent:
commands, status, events) or ``transfer`` (one file per request, raw bytes after a
``put`` line; see `receive`). Lines longer than `MAX_LINE` end the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import time
from typing import Any

from lsl_session.errors import LslSessionError

VERSION = 1
#: Longest JSON line either side accepts (bytes, newline included).
MAX_LINE = 64 * 1024
#: Raw file bytes are sent and received in blocks of this size.
BLOCK = 1 << 20
#: Seconds a peer has for the whole handshake (a trickling peer is cut off).
HANDSHAKE_S = 10.0


class WireError(LslSessionError):
    """A peer broke the protocol, failed the handshake, or went away."""


def mac(token: str, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` joined by ``|`` under ``token`` (hex)."""
    message = "|".join(parts).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def nonce() -> str:
    """A fresh random challenge."""
    return secrets.token_hex(16)


def same(a: Any, b: str) -> bool:
    """Constant-time comparison of a peer's MAC with ours."""
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


class Channel:
    """One socket, read line by line with a bounded buffer.

    Parameters
    ----------
    sock : socket.socket
        A connected socket; its timeout bounds every wait.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def send(self, message: dict[str, Any]) -> None:
        """Send one message (raises `WireError` when the peer is gone)."""
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        if len(data) > MAX_LINE:
            raise WireError(f"message too long ({len(data)} bytes)")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise WireError(f"send failed: {exc}") from None

    def receive(self, deadline: float | None = None) -> dict[str, Any]:
        """The next message (raises `WireError` on EOF, timeout or a bad line).

        ``deadline`` (``time.monotonic()``) bounds the whole wait, however slowly
        the peer trickles bytes.
        """
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise WireError("peer too slow")
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                try:
                    message = json.loads(line)
                except ValueError:
                    raise WireError("peer sent a line that is not JSON") from None
                if not isinstance(message, dict) or not isinstance(
                    message.get("type"), str
                ):
                    raise WireError("peer sent a message without a type")
                return message
            if len(self._buf) >= MAX_LINE:
                raise WireError(f"peer sent a line over {MAX_LINE} bytes")
            try:
                chunk = self.sock.recv(MAX_LINE - len(self._buf))
            except TimeoutError:
                raise WireError("peer silent") from None
            except OSError as exc:
                raise WireError(f"receive failed: {exc}") from None
            if not chunk:
                raise WireError("peer closed the connection")
            self._buf += chunk

    def take_buffered(self, limit: int) -> bytes:
        """Bytes already read past the last line (raw file data), at most ``limit``."""
        data = bytes(self._buf[:limit])
        del self._buf[:limit]
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def hub_handshake(
    chan: Channel, token: str, known_hosts: set[str]
) -> tuple[str, str, str]:
    """The hub's side of the handshake; returns ``(host, role, instance)``.

    Raises
    ------
    WireError
        On a wrong MAC, an unknown host or role (the agent is told why).
    """
    n1 = nonce()
    chan.send({"type": "challenge", "nonce": n1, "version": VERSION})
    hello = chan.receive(time.monotonic() + HANDSHAKE_S)
    host, role = hello.get("host"), hello.get("role")
    instance, n2 = hello.get("instance"), hello.get("nonce")
    if hello.get("type") != "hello" or not all(
        isinstance(v, str) and 0 < len(v) <= 64 for v in (host, role, instance, n2)
    ):
        raise WireError("bad hello")
    if not same(hello.get("mac"), mac(token, "agent", n1, host, role)):
        chan.send({"type": "refused", "reason": "authentication failed"})
        raise WireError(f"agent {host!r}: authentication failed")
    if host not in known_hosts:
        chan.send({"type": "refused", "reason": f"no devices for host {host!r}"})
        raise WireError(f"agent {host!r}: not a host of this lab config")
    if role not in ("control", "transfer"):
        chan.send({"type": "refused", "reason": "unknown role"})
        raise WireError(f"agent {host!r}: unknown role {role!r}")
    chan.send({"type": "welcome", "mac": mac(token, "hub", n2, host, role)})
    return host, role, instance


def agent_handshake(chan: Channel, token: str, host: str, role: str, instance: str):
    """The agent's side; raises `WireError` when refused or the hub is not ours."""
    challenge = chan.receive()
    n1 = challenge.get("nonce")
    if challenge.get("type") != "challenge" or not isinstance(n1, str):
        raise WireError("not an lsl-session recorder host")
    n2 = nonce()
    chan.send(
        {
            "type": "hello",
            "host": host,
            "role": role,
            "instance": instance,
            "nonce": n2,
            "mac": mac(token, "agent", n1, host, role),
        }
    )
    answer = chan.receive()
    if answer.get("type") == "refused":
        raise WireError(f"refused by the recorder host: {answer.get('reason')}"[:200])
    if answer.get("type") != "welcome" or not same(
        answer.get("mac"), mac(token, "hub", n2, host, role)
    ):
        raise WireError("the recorder host failed to prove the lab's token")
