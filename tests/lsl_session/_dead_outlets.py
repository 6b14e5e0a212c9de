"""Child process: N "dead" LSL streams that answer discovery but never serve data.

``python _dead_outlets.py NAME_PREFIX TYPE N`` answers liblsl's ``LSL:shortinfo``
discovery queries (UDP multicast, port 16571) for N streams whose data port is a
TCP socket that listens but never accepts a request: what a hung or firewalled
device on another rig looks like. An inlet connecting to one waits for its
timeout. Prints ``ready`` once listening; runs until stdin closes.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
import threading
import uuid

import pylsl

from lsl_session.lsl import matches_query

LSL_PORT = 16571
GROUPS = ("224.0.0.183", "224.0.0.1", "239.255.172.215")


def main() -> None:
    prefix, stype, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # connections complete in the kernel; nothing ever answers
    port = hole.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    udp.bind(("", LSL_PORT))
    for group in GROUPS:
        mreq = struct.pack(
            "4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1")
        )
        try:
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except OSError:
            pass
    streams = []
    for i in range(count):
        info = pylsl.StreamInfo(
            f"{prefix}_{i}", stype, 1, 100.0, pylsl.cf_float32, f"{prefix}_{i}_sid"
        )
        xml = info.as_xml()
        fields = {
            "uid": str(uuid.uuid4()),
            "session_id": "default",
            "hostname": "dead-rig",
            "v4data_port": str(port),
            "v4service_port": str(udp.getsockname()[1]),
            "created_at": "1.0",
        }
        for key, value in fields.items():
            xml = re.sub(f"<{key}>[^<]*</{key}>", f"<{key}>{value}</{key}>", xml)
        xml = xml.replace("<desc />", "<desc/>")
        # the query is evaluated on an info with this session id
        probe = pylsl.StreamInfo(
            f"{prefix}_{i}", stype, 1, 100.0, pylsl.cf_float32, f"{prefix}_{i}_sid"
        )
        streams.append((probe, xml))
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    udp.settimeout(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not done.is_set():
        try:
            data, sender = udp.recvfrom(65536)
        except TimeoutError:
            continue
        lines = data.decode("utf-8", "replace").split("\r\n")
        if len(lines) < 3 or lines[0].strip() != "LSL:shortinfo":
            continue
        query = lines[1].strip()
        try:
            return_port, query_id = lines[2].strip().split(" ", 1)
        except ValueError:
            continue
        local = query.replace("session_id='default' and ", "", 1)
        for probe, xml in streams:
            if matches_query(probe, local):
                reply = f"{query_id}\r\n{xml}".encode()
                try:
                    udp.sendto(reply, (sender[0], int(return_port)))
                except OSError:
                    pass


if __name__ == "__main__":
    main()
