"""The relay's listening socket: connection caps first, then TLS, then the handler.

`asyncio.start_server` runs the TLS handshake before the application sees a
connection, so peers stuck in a handshake could not be counted or capped. Here
every accepted socket takes a `Slot` (or is refused at once) before anything is
read, and holds it through the handshake, the hello and the session.

Capacity held for authenticated phones: connections that have not authenticated
yet take at most ``max_preauth`` of the ``max_connections`` slots, so the rest can
only be used by phones whose hello was accepted. When the pre-authentication slots
are full, a newcomer from an address that holds at least two fewer of them than
the largest holder takes the oldest slot of that holder (it is closed): stalled
sockets from a few addresses cannot keep an honest phone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Pause after a failed accept (e.g. out of file descriptors) before the next one.
ACCEPT_BACKOFF_S = 0.1
#: At most one warning about failed accepts per this many seconds.
ACCEPT_WARN_EVERY_S = 10.0


@dataclass(eq=False)
class Slot:
    """One admitted connection: its peer address and whether it authenticated."""

    host: str
    address: str
    authenticated: bool = False
    since: float = field(default_factory=time.monotonic)
    task: asyncio.Task | None = field(default=None, repr=False)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Slot], Awaitable[None]]


class Listener:
    """Accept TCP connections under caps, optionally wrap them in TLS, serve them.

    Parameters
    ----------
    host, port : str, int
        Bind address (port 0: any free port).
    handler : callable
        ``await handler(reader, writer, slot)`` serves one admitted connection.
    ssl_context : ssl.SSLContext | None
        Server-side TLS context; the handshake must end within
        ``handshake_timeout``.
    read_limit : int
        Stream reader limit (buffer high-water mark is twice this).
    max_connections : int
        Admitted connections (handshaking, unauthenticated or authenticated).
    max_preauth_per_host : int
        Admitted connections from one IP that have not authenticated yet.
    max_preauth : int | None
        Admitted connections that have not authenticated yet, all addresses
        together (default: half of ``max_connections``); the other slots are
        held for authenticated phones.
    on_refused : callable
        ``on_refused(host, address)`` for every connection refused by a cap.
    busy_frame : bytes
        Sent (plain TCP only) to a refused peer before the socket is closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        read_limit: int,
        max_connections: int,
        max_preauth_per_host: int,
        on_refused: Callable[[str, str], None],
        busy_frame: bytes,
        max_preauth: int | None = None,
    ) -> None:
        self.host, self.port = host, int(port)
        self.handler = handler
        self.ssl_context = ssl_context
        self.handshake_timeout = float(handshake_timeout)
        self.read_limit = int(read_limit)
        self.max_connections = int(max_connections)
        self.max_preauth_per_host = int(max_preauth_per_host)
        self.max_preauth = (
            max(1, self.max_connections // 2)
            if max_preauth is None
            else int(max_preauth)
        )
        self.on_refused = on_refused
        self.busy_frame = busy_frame
        self.slots: set[Slot] = set()
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._serving: set[asyncio.Task] = set()
        self._warned = -ACCEPT_WARN_EVERY_S

    async def start(self) -> int:
        """Bind and start accepting; return the bound port.

        Raises
        ------
        OSError
            If the address cannot be resolved or bound.
        """
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        # one socket: for a name like "localhost" prefer IPv4, what phones dial
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._accepting = loop.create_task(self._accept_loop())
        return self.port

    async def close(self) -> None:
        """Stop accepting and drop connections still in their TLS handshake."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._sock is not None:
            self._sock.close()

    def handshaking(self) -> list[asyncio.Task]:
        """Tasks serving admitted connections (including handshakes in progress)."""
        return list(self._serving)

    def _admit(self, host: str, address: str) -> Slot | None:
        preauth = [s for s in self.slots if not s.authenticated]
        mine = sum(1 for s in preauth if s.host == host)
        if mine >= self.max_preauth_per_host:
            return None
        if len(self.slots) >= self.max_connections or len(preauth) >= self.max_preauth:
            victim = self._victim(preauth, mine)
            if victim is None:
                return None
            self._evict(victim)
        slot = Slot(host, address)
        self.slots.add(slot)
        return slot

    @staticmethod
    def _victim(preauth: list[Slot], mine: int) -> Slot | None:
        """The oldest pre-auth slot of the largest holder, if it holds ≥ mine + 2."""
        counts: dict[str, int] = {}
        for s in preauth:
            counts[s.host] = counts.get(s.host, 0) + 1
        if not counts:
            return None
        largest = max(counts.values())
        if largest < mine + 2:
            return None
        return min(
            (s for s in preauth if counts[s.host] == largest), key=lambda s: s.since
        )

    def _evict(self, victim: Slot) -> None:
        self.slots.discard(victim)
        if victim.task is not None:
            victim.task.cancel()
        self.on_refused(victim.host, victim.address)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                client, addr = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE, ECONNABORTED …: keep listening
                if time.monotonic() - self._warned >= ACCEPT_WARN_EVERY_S:
                    self._warned = time.monotonic()
                    logger.warning("phone relay accept failed: %s", exc)
                await asyncio.sleep(ACCEPT_BACKOFF_S)
                continue
            host = str(addr[0])
            address = f"{addr[0]}:{addr[1]}"
            slot = self._admit(host, address)
            if slot is None:
                if self.ssl_context is None:
                    with contextlib.suppress(OSError):
                        client.send(self.busy_frame)
                client.close()
                self.on_refused(host, address)
                continue
            task = loop.create_task(self._serve(client, slot))
            slot.task = task
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, client: socket.socket, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        transport = None
        try:
            reader = asyncio.StreamReader(limit=self.read_limit, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            extra = {}
            if self.ssl_context is not None:
                extra = {
                    "ssl": self.ssl_context,
                    "ssl_handshake_timeout": self.handshake_timeout,
                }
            try:
                transport, _ = await asyncio.wait_for(
                    loop.connect_accepted_socket(lambda: protocol, client, **extra),
                    self.handshake_timeout + 1.0,
                )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                logger.debug("connection from %s failed: %s", slot.address, exc)
                client.close()
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await self.handler(reader, writer, slot)
        except asyncio.CancelledError:
            if transport is None:  # evicted during the handshake
                client.close()
            raise
        finally:
            self.slots.discard(slot)
