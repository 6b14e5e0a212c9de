"""The lab config's ``[agents]`` table and each device's ``host`` (validated)."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A host name in the lab config (``host = "camera-pc"``).
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: Shortest shared secret accepted (characters).
MIN_TOKEN = 16
AGENTS_FIELDS = {
    "listen", "port", "recorder", "token", "heartbeat_timeout_s",
    "stall_timeout_s", "max_rate_mb_s", "max_file_gb",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    """How the recorder host and its agents find and trust each other.

    ``listen``/``port`` is where the recorder host accepts agents; ``recorder``
    is the address agents dial (``--recorder`` overrides it); ``token`` is the
    shared secret both ends prove with HMAC-SHA256 (never sent).
    """

    listen: str = "0.0.0.0"
    port: int = 9100
    recorder: str | None = None
    token: str | None = None
    heartbeat_timeout_s: float = 3.0
    stall_timeout_s: float = 10.0
    max_rate_mb_s: float | None = None
    max_file_gb: float = 256.0


def parse_agents(f, hosts: set[str]) -> AgentsConfig:
    """Read ``[agents]`` through config's field reader ``f`` (`config._Fields`).

    A config whose devices name hosts needs a ``token`` of ``MIN_TOKEN``
    characters or more.
    """
    token = f.string("token")
    if hosts and token is None:
        raise f.fail(
            "token",
            f"devices on other hosts ({', '.join(sorted(hosts))}) need a shared"
            " secret for their agents",
        )
    if token is not None and len(token) < MIN_TOKEN:
        raise f.fail("token", f"must be at least {MIN_TOKEN} characters")
    return AgentsConfig(
        listen=f.string("listen", "0.0.0.0"),
        port=f.integer("port", 9100, high=65535),
        recorder=f.string("recorder"),
        token=token,
        heartbeat_timeout_s=f.number("heartbeat_timeout_s", 3.0, low=0.5, high=60.0),
        stall_timeout_s=f.number("stall_timeout_s", 10.0, low=0.5, high=600.0),
        max_rate_mb_s=f.number("max_rate_mb_s", low=0.01),
        max_file_gb=f.number("max_file_gb", 256.0, low=0.001, high=65536.0),
    )
