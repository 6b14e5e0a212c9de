"""Per-connection line queue: lines are time-stamped on arrival and run in order.

A client that never reads its replies (``labrecorder-controller``) sends
``stop``, ``filename …`` and ``start`` at once. Each line gets the LSL time it
arrived before it waits for the one ahead of it: a ``start`` queued behind a
``stop`` still records from when it was sent, not from when the ``stop`` is done.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

import pylsl

logger = logging.getLogger(__name__)

#: Lines of one connection waiting for their turn; the reader blocks beyond this.
MAX_QUEUED = 64

#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS; not exported by Python's socket).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
#: A kernel arrival stamp older than this is not trusted (a clock step).
MAX_STAMP_AGE = 60.0


def enable_arrival_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every received segment (Linux); True if it will.

    On loopback the stamp is taken inside the sender's ``send`` call, so a
    client that pushes a marker right after sending ``start`` stamps its
    marker after the ``start``, however late this server's thread wakes up.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    _quick_ack(sock)
    return True


def _quick_ack(sock: socket.socket) -> None:
    """ACK at once (Linux re-arms delayed ACKs after reads, so this is per read).

    A client's TCP holds a small line back until its previous one is ACKed
    (Nagle); with delayed ACKs that is up to ~40 ms, and the line's arrival
    stamp would be that late.
    """
    quick = getattr(socket, "TCP_QUICKACK", None)
    if quick is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quick, 1)
        except OSError:
            pass


def recv_stamped(sock: socket.socket, stamped: bool) -> tuple[bytes, float]:
    """Receive up to 64 KiB and the LSL time it arrived (kernel stamp if any).

    Segments that waited in the socket are merged by the kernel and carry the
    stamp of the last one: lines sent within the moment before this thread read
    the first share the latest line's time.
    """
    if not stamped:
        data = sock.recv(65536)
        return data, pylsl.local_clock()
    data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
    real, now = _clocks()
    _quick_ack(sock)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack(payload[: _TIMESPEC.size])
            age = real - (sec + nsec * 1e-9)
            if 0.0 <= age <= MAX_STAMP_AGE:
                return data, now - age
    return data, now


def _clocks() -> tuple[float, float]:
    """The wall clock and ``local_clock()`` read together (the tightest of 3 tries)."""
    best: tuple[float, float, float] | None = None
    for _ in range(3):
        before = time.clock_gettime(time.CLOCK_REALTIME)
        lsl = pylsl.local_clock()
        after = time.clock_gettime(time.CLOCK_REALTIME)
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) / 2, lsl)
        if after - before < 20e-6:
            break
    return best[1], best[2]


#: ``handle(line, received) -> reply``; a None line stands for a discarded one.
Handle = Callable[[str | None, float], bytes]


class LineWorker:
    """Run one connection's lines in order in a thread, and send the replies.

    Parameters
    ----------
    sock : socket.socket
        The connection (replies are written to it).
    handle : callable
        ``handle(line, received) -> reply``.
    after : callable
        Called after each reply (the ``quit`` check).
    name : str
        Thread name.
    """

    def __init__(
        self,
        sock: socket.socket,
        handle: Handle,
        after: Callable[[], None],
        name: str,
    ) -> None:
        self._sock = sock
        self._handle = handle
        self._after = after
        self._jobs: queue.Queue[tuple[str | None, float] | None] = queue.Queue(
            MAX_QUEUED
        )
        self._busy = False
        self._send = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        """True when no line is queued or running."""
        return not self._busy and self._jobs.empty()

    def put(self, line: str | None, received: float) -> None:
        """Queue ``line`` with its arrival time (``pylsl.local_clock()`` time)."""
        self._jobs.put((line, received))

    def finish(self, timeout: float) -> None:
        """Run what is queued (a ``stop`` sent just before leaving still runs)."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            line, received = job
            self._busy = True
            try:
                reply = self._handle(line, received)
                if self._send:
                    try:
                        self._sock.sendall(reply)
                    except OSError as exc:
                        # the client left or does not read: its later replies
                        # are dropped, its queued lines still run
                        logger.warning("control: reply not delivered: %s", exc)
                        self._send = False
                self._after()
            except Exception:
                logger.exception("control: a queued line failed")
            finally:
                self._busy = False
