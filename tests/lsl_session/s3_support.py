"""A real S3-compatible server on 127.0.0.1 (moto's) and a TCP proxy that cuts it."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import pytest

BUCKET = "lab-archive"


@dataclass
class CuttingProxy:
    """Forward 127.0.0.1:port → the server; cut every connection at byte thresholds.

    ``cuts`` are counts of client→server bytes (over all connections and runs);
    when the count passes one, every open connection is closed and new ones are
    refused until `restore`.
    """

    target: tuple[str, int]
    cuts: list[int] = field(default_factory=list)
    forwarded: int = 0
    down: bool = False
    cut_count: int = 0

    def __post_init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        with self.lock:
            self.down = False

    def close(self) -> None:
        self.closing = True
        self.server.close()
        self._cut_all()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                refused = self.down
            if refused:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(
                target=self._pipe, args=(client, upstream, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, False), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted:
                    with self.lock:
                        self.forwarded += len(data)
                        cut = bool(self.cuts) and self.forwarded >= self.cuts[0]
                        if cut:
                            self.cuts.pop(0)
                            self.down = True
                            self.cut_count += 1
                    if cut:
                        self._cut_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _cut_all(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server on 127.0.0.1 (a free port), one bucket, fake credentials."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(
        ip_address="127.0.0.1", port=0, verbose=False
    )
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket=BUCKET)
    yield client, (host, port)
    server.stop()
