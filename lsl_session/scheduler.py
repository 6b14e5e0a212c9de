"""A Dask scheduler address, checked before any Dask call can hang on it.

``distributed.Client(address, timeout=…)`` waits forever on a listener that
accepts and never speaks, and ``client.map`` waits forever on a cluster with no
worker. Here every address is parsed first (one line naming it when malformed),
the scheduler must send its handshake within `HANDSHAKE_TIMEOUT` s (a real one
does at once), and a worker must be there within `worker_wait()` seconds.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from lsl_session.errors import LslSessionError
from lsl_session.limits import clip

#: Seconds to open the TCP connection, and for the scheduler's first bytes.
CONNECT_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 5.0
#: Seconds to wait for the first worker (``LSL_SESSION_SCHEDULER_WAIT`` overrides).
WORKER_WAIT = 60.0
#: Dask's default scheduler port, when the address gives none.
DEFAULT_PORT = 8786

_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?$"
)


class SchedulerError(LslSessionError):
    """The Dask scheduler address is malformed, silent, or has no worker."""


@dataclass(frozen=True, slots=True)
class SchedulerAddress:
    """A parsed ``tcp://host:port``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The address as Dask takes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_address(address: str) -> SchedulerAddress:
    """``tcp://host:port`` (or ``host:port``, ``tcp://host``) as a `SchedulerAddress`.

    Raises
    ------
    SchedulerError
        One line naming the address: empty host, bad port, or a scheme other
        than ``tcp`` (``tls://`` needs certificates lsl-session does not
        configure; ``inproc://`` only exists inside another process).
    """
    shown = clip(repr(address), 80)
    match = _ADDRESS.match(address.strip()) if len(address) <= 300 else None
    if not match:
        scheme = address.split("://", 1)[0].lower() if "://" in address else ""
        if scheme and scheme != "tcp":
            raise SchedulerError(_scheme_message(shown, scheme))
        raise SchedulerError(
            f"--scheduler {shown} is not a scheduler address: give tcp://host:port"
        )
    scheme = (match.group("scheme") or "tcp").lower()
    if scheme != "tcp":
        raise SchedulerError(_scheme_message(shown, scheme))
    if len(match.group("host")) > 253:  # longer than any DNS name
        raise SchedulerError(f"--scheduler {shown}: host name too long")
    port = int(match.group("port") or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise SchedulerError(f"--scheduler {shown}: port {port} is out of range")
    return SchedulerAddress(match.group("host").strip("[]"), port)


def _scheme_message(shown: str, scheme: str) -> str:
    if scheme == "tls":
        why = "TLS needs client certificates, which lsl-session does not configure"
    elif scheme == "inproc":
        why = "inproc:// only exists inside the process that made it"
    else:
        why = f"{clip(scheme, 20)}:// is not supported"
    return f"--scheduler {shown}: {why}; give tcp://host:port (tunnel it if needed)"


def probe(address: SchedulerAddress) -> None:
    """Connect and wait for the scheduler's handshake, each step bounded.

    Raises
    ------
    SchedulerError
        Refused, unreachable, or silent (a listener that is not a scheduler).
    """
    try:
        sock = socket.create_connection(
            (address.host, address.port), timeout=CONNECT_TIMEOUT
        )
    except OSError as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler {address.url}: {exc.strerror or exc}"
        ) from None
    try:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        first = sock.recv(16)
    except OSError:
        first = b""
    finally:
        sock.close()
    if not first:
        raise SchedulerError(
            f"{address.url} accepted a connection but sent no Dask handshake in"
            f" {HANDSHAKE_TIMEOUT:g} s: not a Dask scheduler"
        )


def worker_wait() -> float:
    """Seconds to wait for the first worker (env ``LSL_SESSION_SCHEDULER_WAIT``)."""
    raw = os.environ.get("LSL_SESSION_SCHEDULER_WAIT", "")
    try:
        value = float(raw)
    except ValueError:
        return WORKER_WAIT
    return value if 0 < value < 86_400 else WORKER_WAIT
