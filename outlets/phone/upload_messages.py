"""Upload messages of one phone connection: offer, chunks, end (protocol §7).

The file work (`UploadStore`) is blocking and runs in the loop's default
executor; this module only turns messages into store calls and replies.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any, Protocol

from outlets.phone.protocol import Message, ProtocolError
from outlets.phone.state import DeviceState, RelayHost

#: What the relay's upload ids look like (anything else is not echoed).
_UPLOAD_ID = re.compile(r"u[0-9]{1,18}")


class UploadPeer(Protocol):
    """The part of a connection the upload messages use."""

    relay: RelayHost
    device: DeviceState | None

    def send(self, message: dict[str, Any]) -> None:
        """Queue a JSON message to the phone."""


async def handle_upload(conn: UploadPeer, msg: Message) -> None:
    """Serve ``upload_offer``/``upload_chunk``/``upload_end`` (file I/O in a thread).

    Raises
    ------
    ProtocolError
        With ``re_id`` set to the message id, for the connection to answer.
    """
    store, relay = conn.relay.uploads, conn.relay
    re_id = msg.get("id")
    try:
        if store is None:
            raise ProtocolError(
                "no_session",
                "the relay has no session: uploads "
                "are refused (start it with --session)",
            )
        run = asyncio.get_running_loop().run_in_executor
        dev = conn.device
        if msg.type == "upload_offer":
            res = await run(
                None,
                lambda: store.offer(
                    dev.device_id,
                    name=msg.get("name"),
                    size=msg.get("size"),
                    sha256=msg.get("sha256"),
                    file_type=msg.get("file_type"),
                    owner=conn,
                ),
            )
            conn.send({"type": "upload_ready", "re": re_id, **res})
        elif msg.type == "upload_chunk":
            await run(
                None,
                store.write,
                msg.get("upload_id"),
                msg.get("offset"),
                msg.body,
                conn,
            )
        elif msg.type == "upload_end":
            when = dev.record_started or datetime.now()
            entry = await run(None, store.finish, msg.get("upload_id"), conn, when)
            conn.send(
                {
                    "type": "upload_done",
                    "re": re_id,
                    "upload_id": msg.get("upload_id"),
                    **entry,
                }
            )
            relay.log(
                "file_received",
                {
                    "device_id": dev.device_id,
                    "file_type": entry["file_type"],
                    "file_path": entry["file_path"],
                    "file_size": entry["file_size"],
                    "sha256": entry["sha256"],
                },
            )
    except ProtocolError as exc:
        exc.re_id = re_id
        upload_id = msg.get("upload_id")
        if isinstance(upload_id, str) and _UPLOAD_ID.fullmatch(upload_id):
            exc.extra.setdefault("upload_id", upload_id)  # only ids the relay made
        raise
