"""LabRecorder's remote control on its own engine, as the GUI runs it (for benchmarks).

The GUI's RCS (``src/tcpinterface.cpp``, ``src/mainwindow.cpp``) handles one line
at a time in the Qt thread and writes ``OK`` after each: ``filename`` sets the
fields, ``start`` refreshes the stream list (``resolve_streams(1.0)``), selects
every stream and constructs the ``recording`` (inlets opened there), ``stop``
destroys it (threads joined, footers written). This script does the same with
the ``labrecorder`` wheel's Python extension, which wraps that ``recording``
class: ``Recording(...)`` then ``stop()`` and ``del``.

Usage: ``python _labrecorder_rcs.py ROOT`` prints ``port N`` and serves until
``quit``. Files: ``ROOT/run-NNN.xdf``.
"""

from __future__ import annotations

import gc
import re
import socket
import sys
from pathlib import Path

import labrecorder
import pylsl


def main() -> None:
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    print(f"port {srv.getsockname()[1]}", flush=True)
    conn, _ = srv.accept()
    rec = None
    run = 1
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode().strip()
            if line == "start" and rec is None:
                infos = pylsl.resolve_streams(1.0)  # refreshStreams()
                rec = labrecorder.Recording(str(root / f"run-{run:03d}.xdf"), infos)
            elif line == "stop" and rec is not None:
                rec.stop()
                del rec  # the destructor joins the threads and writes footers
                rec = None
                gc.collect()
            elif line.startswith("filename"):
                m = re.search(r"\{run:(\d+)\}", line)
                if m:
                    run = int(m.group(1))
            elif line == "quit":
                return
            try:
                conn.sendall(b"OK")
            except OSError:  # the client left without reading its replies
                pass


if __name__ == "__main__":
    main()
