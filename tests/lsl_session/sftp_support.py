"""A real SFTP server on 127.0.0.1 (paramiko's server side), serving one folder."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

USER, PASSWORD = "lab", "lab-password-123"


def _server_classes(paramiko):
    class Auth(paramiko.ServerInterface):
        def check_auth_password(self, username, password):
            ok = username == USER and password == PASSWORD
            return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

        def get_allowed_auths(self, username):
            return "password"

        def check_channel_request(self, kind, chanid):
            ok = kind == "session"
            return (
                paramiko.OPEN_SUCCEEDED
                if ok
                else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
            )

    class Folder(paramiko.SFTPServerInterface):
        """Every path is taken relative to ``root`` (no way out with ``..``)."""

        root: Path

        def _local(self, path: str) -> str:
            parts = [p for p in path.split("/") if p not in ("", ".", "..")]
            return str(self.root.joinpath(*parts))

        def _attr(self, local: str, name: str | None = None):
            attr = paramiko.SFTPAttributes.from_stat(os.stat(local))
            if name is not None:
                attr.filename = name
            return attr

        def _call(self, fn, *args):
            try:
                return fn(*args)
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        def list_folder(self, path):
            local = self._local(path)
            return self._call(lambda: [self._attr(os.path.join(local, n), n)
                                       for n in os.listdir(local)])  # fmt: skip

        def stat(self, path):
            return self._call(self._attr, self._local(path))

        lstat = stat

        def open(self, path, flags, attr):
            local = self._local(path)

            def do():
                fd = os.open(local, flags, 0o644)
                mode = ("ab" if flags & os.O_APPEND else "r+b" if flags & os.O_RDWR
                        else "wb" if flags & os.O_WRONLY else "rb")  # fmt: skip
                handle = paramiko.SFTPHandle(flags)
                fh = os.fdopen(fd, mode)
                handle.readfile = handle.writefile = fh
                return handle

            return self._call(do)

        def remove(self, path):
            return self._call(lambda: os.remove(self._local(path)) or paramiko.SFTP_OK)

        def rename(self, old, new):
            return self._call(lambda: os.rename(self._local(old), self._local(new))
                              or paramiko.SFTP_OK)  # fmt: skip

        posix_rename = rename

        def mkdir(self, path, attr):
            return self._call(lambda: os.mkdir(self._local(path)) or paramiko.SFTP_OK)

        def rmdir(self, path):
            return self._call(lambda: os.rmdir(self._local(path)) or paramiko.SFTP_OK)

        def chattr(self, path, attr):
            return paramiko.SFTP_OK

        def canonicalize(self, path):
            return "/" + "/".join(
                p for p in path.split("/") if p not in ("", ".", "..")
            )

    return Auth, Folder


@pytest.fixture
def sftp_server(tmp_path):
    """``(port, folder)`` of an SFTP server (user ``lab``) serving ``folder``."""
    paramiko = pytest.importorskip("paramiko")
    Auth, Folder = _server_classes(paramiko)
    folder = tmp_path / "sftp-root"
    folder.mkdir()
    Folder.root = folder
    host_key = paramiko.RSAKey.generate(2048)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()
    transports = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, Folder)
            transport.start_server(server=Auth())
            transports.append(transport)

    threading.Thread(target=serve, daemon=True).start()
    yield port, folder
    stop.set()
    listener.close()
    for t in transports:
        t.close()
