"""Threaded TCP transport of the remote-control socket (loopback unless a token is set)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsl_session.control.finisher import SessionFinisher
from lsl_session.control.handler import ControlHandler
from lsl_session.control.lines import LineWorker, enable_arrival_stamps, recv_stamped
from lsl_session.control.protocol import MAX_LINE, REPLY_OK, parse_line
from lsl_session.errors import LslSessionError

if TYPE_CHECKING:
    from lsl_session.manager import SessionManager

logger = logging.getLogger(__name__)

#: Socket timeout of a connection: how often it checks for shutdown, and the
#: longest a reply may wait for a client that does not read.
POLL_INTERVAL = 0.5

#: With a token: seconds a connection has to send its ``auth`` line.
AUTH_TIMEOUT = 10.0

#: When every slot is taken, a connection silent for this long may be closed
#: to make room (one that never sent a line goes first, whatever its age).
EVICT_IDLE_AFTER = 30.0

#: At most one "refusing" log line per this many seconds (a flood is summarised).
REFUSE_LOG_INTERVAL = 10.0


@dataclass
class _Client:
    sock: socket.socket
    peer: tuple[Any, ...]
    connected: float = field(default_factory=time.monotonic)
    last_line: float | None = None

    def idle(self, now: float) -> float:
        return now - (self.connected if self.last_line is None else self.last_line)


def is_loopback(host: str) -> bool:
    """True if ``host`` is ``localhost`` or a loopback IP address."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], control: ControlServer) -> None:
        self.control = control
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        self.server.control._serve(self.request, self.client_address)


class ControlServer:
    """LabRecorder-compatible remote-control socket driving a `SessionManager`.

    Parameters
    ----------
    manager : SessionManager
        The manager to drive.
    host : str
        Bind address; anything but loopback needs ``token``.
    port : int
        TCP port (LabRecorder's is 22345); 0 picks a free port (see `address`).
    token : str | None
        When set, a client's first line must be ``auth <token>``, else the
        connection is closed.
    default_streams : list of str | None
        The initial selection (LSL queries).
    on_quit : callable | None
        Called after the reply to the ``quit`` extension was sent (the
        session was stopped and ended before).
    process : bool
        Post-process each session ended by ``stop`` (in the background).
    default_name : str | None
        Session name when no ``filename`` field names it.
    recorder_options : dict | None
        Passed to `SessionManager.start_recording`.
    max_clients : int
        Connections held at once. When all are taken, a new connection
        replaces the one that never sent a line (oldest first) or, failing
        that, the one idle longest if idle ≥ ``evict_idle_after``; else it is
        closed at once (logged, at most once per 10 s).
    auth_timeout : float
        With a token: seconds a connection has to send its ``auth`` line.
    evict_idle_after : float
        See ``max_clients``.
    create_session : callable | None
        ``create_session(name)`` used by ``start``; default
        ``manager.create_session``.
    finisher : SessionFinisher | None
        Receives every ended session (see `ControlHandler`).

    Raises
    ------
    LslSessionError
        If ``host`` is not loopback and no token was given.

    Notes
    -----
    One daemon thread per connection; every line gets its reply before the
    next line is read. Line handling is `ControlHandler`.
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        host: str = "127.0.0.1",
        port: int = 22345,
        token: str | None = None,
        default_streams: Iterable[str] | None = None,
        on_quit: Callable[[], None] | None = None,
        process: bool = True,
        default_name: str | None = None,
        recorder_options: dict[str, Any] | None = None,
        max_clients: int = 32,
        create_session: Callable[[str | None], object] | None = None,
        finisher: SessionFinisher | None = None,
        auth_timeout: float = AUTH_TIMEOUT,
        evict_idle_after: float = EVICT_IDLE_AFTER,
    ) -> None:
        if not is_loopback(host) and not token:
            raise LslSessionError(
                f"refusing to bind the control socket to non-loopback {host!r}"
                " without a token (give --control-token)"
            )
        self.host = host
        self.port = int(port)
        self.token = token or None
        self.max_clients = max(1, int(max_clients))
        self.auth_timeout = float(auth_timeout)
        self.evict_idle_after = float(evict_idle_after)
        self._refused = 0
        self._refused_logged = -REFUSE_LOG_INTERVAL
        self.handler = ControlHandler(
            manager,
            default_streams=default_streams,
            default_name=default_name,
            process=process,
            recorder_options=recorder_options,
            create_session=create_session,
            finisher=finisher,
        )
        self.on_quit = on_quit
        self._server: _TcpServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._clients: dict[socket.socket, _Client] = {}
        self._clients_lock = threading.Lock()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlServer:
        """Bind and serve in a background thread.

        Raises
        ------
        LslSessionError
            If the address cannot be bound (port in use, bad host).
        """
        if self._server is not None:
            return self
        try:
            self._server = _TcpServer((self.host, self.port), self)
        except OSError as exc:
            raise LslSessionError(
                f"cannot bind the control socket to {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="control-server",
            daemon=True,
        )
        self._thread.start()
        logger.info("remote control listening on %s:%d", *self.address[:2])
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, end a running run; safe twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()
        server.shutdown()
        server.server_close()
        with self._clients_lock:
            for sock in list(self._clients):
                _shutdown(sock)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        close = getattr(self.handler, "close", None)
        if close is not None:  # a running run is stopped, the open streams closed
            close()
        logger.info("remote control stopped")

    # ------------------------------------------------------------ transport
    def _serve(self, sock: socket.socket, peer: tuple[Any, ...]) -> None:
        """Read lines from one client until it leaves or the server stops."""
        client = _Client(sock, peer)
        with self._clients_lock:
            victim = None
            if len(self._clients) >= self.max_clients:
                victim = self._evictable(client.connected)
                if victim is not None:
                    del self._clients[victim.sock]
            admitted = len(self._clients) < self.max_clients
            if admitted:
                self._clients[sock] = client
        if victim is not None:
            logger.warning(
                "control: closing %s (%s for %.0f s) to admit %s",
                victim.peer[:2],
                "silent" if victim.last_line is None else "idle",
                victim.idle(client.connected),
                peer[:2],
            )
            _shutdown(victim.sock)
        if not admitted:
            self._log_refused(peer)
            return
        logger.info("control: client %s connected", peer[:2])
        try:
            self._read_lines(client)
        except OSError as exc:
            logger.warning("control: client %s dropped: %s", peer[:2], exc)
        except Exception:
            logger.exception("control: connection %s failed", peer[:2])
        finally:
            with self._clients_lock:
                if self._clients.get(sock) is client:
                    del self._clients[sock]
            logger.info("control: client %s disconnected", peer[:2])

    def _evictable(self, now: float) -> _Client | None:
        """The connection to close for a new one (hold the clients lock)."""
        silent = [c for c in self._clients.values() if c.last_line is None]
        if silent:
            return min(silent, key=lambda c: c.connected)
        idle = max(self._clients.values(), key=lambda c: c.idle(now), default=None)
        if idle is not None and idle.idle(now) >= self.evict_idle_after:
            return idle
        return None

    def _log_refused(self, peer: tuple[Any, ...]) -> None:
        now = time.monotonic()
        with self._clients_lock:
            self._refused += 1
            if now - self._refused_logged < REFUSE_LOG_INTERVAL:
                return
            count, self._refused, self._refused_logged = self._refused, 0, now
        logger.warning(
            "control: too many clients; refusing %s (%d refused since the last"
            " such message)",
            peer[:2],
            count,
        )

    def _read_lines(self, client: _Client) -> None:
        sock = client.sock
        sock.settimeout(POLL_INTERVAL)
        worker = LineWorker(
            sock, self._handle_queued, self._after_reply, name="control-lines"
        )
        try:
            self._read_into(client, worker)
        finally:
            worker.finish(timeout=60.0)

    def _handle_queued(self, line: str | None, received: float) -> bytes:
        if line is None:  # an over-long line, discarded
            return REPLY_OK
        return self.handler.handle(line, received)

    def _after_reply(self) -> None:
        if self.handler.quit_requested.is_set() and self.on_quit:
            self.on_quit()

    def _read_into(self, client: _Client, worker: LineWorker) -> None:
        """Read lines; authenticate here, queue the rest with their arrival time."""
        sock, peer = client.sock, client.peer
        authenticated = self.token is None
        buffer = bytearray()
        discarding = 0  # bytes dropped of the current over-long line
        stamped = enable_arrival_stamps(sock)
        while not self._closing.is_set():
            if not authenticated and client.idle(time.monotonic()) > self.auth_timeout:
                logger.warning(
                    "control: client %s sent no auth line within %.0f s; closing",
                    peer[:2],
                    self.auth_timeout,
                )
                return
            try:
                data, arrived = recv_stamped(sock, stamped)
            except TimeoutError:
                continue
            if not data:
                if buffer or discarding:
                    logger.warning(
                        "control: client %s left mid-line (%d bytes dropped)",
                        peer[:2],
                        len(buffer) + discarding,
                    )
                return
            buffer += data
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > MAX_LINE:
                        discarding += len(buffer)
                        buffer.clear()
                    break
                raw = bytes(buffer[:end])
                del buffer[: end + 1]
                client.last_line = time.monotonic()
                if discarding or len(raw) > MAX_LINE:
                    logger.warning(
                        "control: line of %d bytes from %s exceeds %d; discarded",
                        discarding + len(raw),
                        peer[:2],
                        MAX_LINE,
                    )
                    discarding = 0
                    if not authenticated:
                        return
                    worker.put(None, arrived)
                    continue
                line = raw.decode("utf-8", errors="replace")
                if not authenticated:
                    if not self._authenticate(line):
                        logger.warning(
                            "control: client %s failed to authenticate; closing",
                            peer[:2],
                        )
                        return
                    authenticated = True
                    sock.sendall(REPLY_OK)  # nothing is queued before the auth line
                    continue
                idle = worker.idle
                worker.put(line, arrived)
                early = getattr(self.handler, "received", None)
                if idle and early is not None:
                    early(line, arrived)

    def _authenticate(self, line: str) -> bool:
        command = parse_line(line)
        if command.kind != "auth" or self.token is None:
            return False
        return hmac.compare_digest(
            (command.arg or "").encode("utf-8"), self.token.encode("utf-8")
        )

    # -------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (the real port when ``port=0``)."""
        if self._server is None:
            return (self.host, self.port)
        host, port = self._server.server_address[:2]
        return (str(host), int(port))


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
