"""The agent's end of a file delivery: resumable, rate-capped, sha256 at both ends.

`deliver` connects (``transfer`` role), offers the file, sends what the hub does
not have yet and compares the hub's digest with its own. A cut connection, a
stall longer than ``stall_timeout`` or a refused connect is retried with a
growing pause until ``deadline``; each retry resumes from the hub's part file.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from lsl_session.agents.wire import BLOCK, Channel, WireError, agent_handshake

logger = logging.getLogger(__name__)

#: Deliveries retried after a hub-side sha256 mismatch before giving up.
MAX_MISMATCHES = 3


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to deliver."""

    address: str
    port: int
    token: str
    host: str
    instance: str
    stall_timeout: float = 10.0
    max_rate: float | None = None  # bytes/s


@dataclass(frozen=True, slots=True)
class Offer:
    """One local file and its place in the session tree."""

    local: str
    path: str
    device_id: str
    file_type: str
    size: int
    sha256: str


@dataclass
class Delivery:
    """What happened to one offer."""

    ok: bool
    sent: int = 0
    attempts: int = 0
    resumed_from: int = 0
    reason: str = ""


def connect(target: Target, role: str) -> Channel:
    """A connected, authenticated channel (raises `WireError` or `OSError`)."""
    sock = socket.create_connection(
        (target.address, target.port), timeout=target.stall_timeout
    )
    chan = Channel(sock)
    try:
        agent_handshake(chan, target.token, target.host, role, target.instance)
    except BaseException:
        chan.close()
        raise
    return chan


def deliver(
    target: Target,
    session_id: str,
    offer: Offer,
    *,
    deadline: float,
    stop: threading.Event | None = None,
) -> Delivery:
    """Deliver ``offer`` into the hub's session ``session_id`` (see the module doc)."""
    result = Delivery(ok=False)
    pause, mismatches = 0.2, 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        result.attempts += 1
        try:
            outcome = _attempt(target, session_id, offer, result)
        except (OSError, WireError) as exc:
            logger.info("delivery of %s interrupted: %s", offer.path, exc)
            result.reason = str(exc)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        if outcome == "done":
            result.ok = True
            return result
        if outcome == "mismatch":
            mismatches += 1
            if mismatches >= MAX_MISMATCHES:
                break
            continue
        break  # refused: retrying changes nothing
    return result


def _attempt(target: Target, session_id: str, offer: Offer, result: Delivery) -> str:
    chan = connect(target, "transfer")
    try:
        chan.send({"type": "put", "session_id": session_id, "path": offer.path,
                   "device_id": offer.device_id, "file_type": offer.file_type,
                   "size": offer.size, "sha256": offer.sha256})  # fmt: skip
        answer = chan.receive()
        if answer["type"] == "have":
            return _check(answer, offer, result)
        if answer["type"] != "offset":
            result.reason = str(answer.get("reason") or answer["type"])[:200]
            return "refused"
        offset = answer.get("offset")
        if not isinstance(offset, int) or not 0 <= offset <= offer.size:
            raise WireError("bad offset from the hub")
        if result.attempts == 1 or offset > 0:
            result.resumed_from = offset
        result.sent += _send_from(chan, offer, offset, target.max_rate)
        chan.sock.settimeout(max(target.stall_timeout, 60.0))  # the hub hashes it
        answer = chan.receive()
        if answer["type"] == "done":
            return _check(answer, offer, result)
        if answer.get("reason") == "sha256 mismatch":
            return "mismatch"
        result.reason = str(answer.get("reason") or answer["type"])[:200]
        return "refused"
    finally:
        chan.close()


def _check(answer: dict, offer: Offer, result: Delivery) -> str:
    if answer.get("sha256") != offer.sha256:
        result.reason = "the hub's sha256 differs from ours"
        return "mismatch"
    return "done"


def _send_from(chan: Channel, offer: Offer, offset: int, max_rate: float | None) -> int:
    sent = 0
    started = time.monotonic()
    with open(offer.local, "rb") as fh:
        fh.seek(offset)
        left = offer.size - offset
        while left > 0:
            block = fh.read(min(BLOCK if max_rate is None else 64 * 1024, left))
            if not block:
                raise OSError(f"{offer.local} shrank while being sent")
            try:
                chan.sock.sendall(block)
            except OSError as exc:
                raise WireError(f"send failed: {exc}") from None
            sent += len(block)
            left -= len(block)
            if max_rate:
                ahead = sent / max_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    return sent


def file_size(path: str) -> int:
    return os.stat(path).st_size
