"""A TLS relay process stops on SIGTERM, SIGINT and --duration with stuck clients."""

from __future__ import annotations

import json
import select
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
from lsl_helpers import wait_until
from phone_client import self_signed

from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone.limits import RelayLimits


def _start(tmp_path, *extra: str) -> tuple[subprocess.Popen, int, object]:
    cert, key = self_signed(tmp_path)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tls_phone": "t"}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsl_session",
            "outlet",
            "phone-relay",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tokens",
            str(tokens),
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    line = ""
    while "listening:" not in line:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
        assert proc.poll() is None and time.monotonic() < deadline, line
    port = int(line.split(":")[2].split()[0])
    return proc, port, cert


def _stuck_clients(port: int, cert) -> list[socket.socket]:
    """A silent TCP peer, half a ClientHello, and a TLS peer with half a frame."""
    silent = socket.create_connection(("127.0.0.1", port))
    half_hello = socket.create_connection(("127.0.0.1", port))
    half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    ctx = ssl.create_default_context(cafile=str(cert))
    tls = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
    )
    tls.sendall(b"\x00\x00\x10\x00J{")  # 4096 bytes announced, 2 sent
    return [silent, half_hello, tls]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "duration"])
def test_tls_relay_stops_with_stuck_clients(tmp_path, how):
    extra = ("--duration", "3") if how == "duration" else ()
    proc, port, cert = _start(tmp_path, *extra)
    try:
        sim = PhoneSimulator(
            "127.0.0.1", port, "tls_phone", "t", tls=True, cafile=cert, jitter_ms=(0, 0)
        ).start()
        stuck = _stuck_clients(port, cert)
        if how != "duration":
            time.sleep(0.5)
            proc.send_signal(getattr(signal, how))
        # A generous bound that only a hang exceeds (not a speed threshold).
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sim.stop()
    for s in stuck:
        s.close()
    assert rc == 0, err
    assert "Traceback" not in err
    assert "Task was destroyed" not in err


def test_tls_handshakes_in_progress_count_against_the_connection_cap(tmp_path, uid):
    cert, key = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    dev = f"tls_cap_{uid}"
    limits = RelayLimits(max_connections=4)
    with PhoneRelay(tokens={dev: "t"}, ssl_context=ctx, limits=limits) as relay:
        sim = PhoneSimulator(
            "127.0.0.1", relay.port, dev, "t", tls=True, cafile=cert, jitter_ms=(0, 0)
        ).start()
        assert relay.wait_ready(dev)
        client_ctx = ssl.create_default_context(cafile=str(cert))

        def tls_connect() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
            return client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")

        silent = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(3)]
        # accepted, never starting their handshake: all 4 slots are taken
        assert wait_until(lambda: relay.connection_count() == 4)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect()  # slots full: refused before any handshake
        for s in silent:
            s.close()
        assert wait_until(lambda: relay.connection_count() == 1)
        ok = tls_connect()  # slots free again: the handshake completes
        assert ok.version() is not None
        ok.close()
        count = relay.status()[dev]["samples"]["gsr"]
        assert wait_until(lambda: relay.status()[dev]["samples"]["gsr"] > count + 10)
        sim.stop()
