"""Test hosts in network namespaces: a bridge, one veth per host, private addresses.

The namespaces, the bridge and the veths are made by the test and removed by it;
the addresses (``10.231.<net>.0/24``) exist only inside them, so no traffic ever
leaves this machine. Needs root and ``ip`` (iproute2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field


def available() -> str | None:
    """Why the namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Host:
    """One test host: its namespace, its veth (both ends) and its address."""

    name: str
    ns: str
    address: str
    veth: str  # the end inside the host's namespace
    peer: str  # the end on the bridge

    def prefix(self) -> list[str]:
        """Command prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.ns]

    def netem(self, spec: str) -> str | None:
        """Add ``tc qdisc … netem <spec>`` on the cable; the reason when impossible."""
        if shutil.which("tc") is None:
            return "no 'tc' command"
        out = subprocess.run(
            ["tc", "qdisc", "add", "dev", self.peer, "root", "netem", *spec.split()],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return None if out.returncode == 0 else out.stderr.strip() or "tc failed"

    def link(self, up: bool) -> None:
        """Cut (``up=False``) or restore this host's cable (the bridge end)."""
        _ip("link", "set", self.peer, "up" if up else "down")


@dataclass
class Lab:
    """A bridge and its hosts (see `lab`)."""

    tag: str
    net: int
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def add(self, name: str) -> Host:
        n = len(self.hosts) + 2
        ns = f"mpc-{self.tag}-{name}"
        veth, peer = f"v{self.tag}{n}a", f"v{self.tag}{n}b"
        address = f"10.231.{self.net}.{n}"
        _ip("netns", "add", ns)
        self.hosts[name] = host = Host(name, ns, address, veth, peer)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", veth, "netns", ns)
        _ip("link", "set", peer, "master", self.bridge)
        _ip("link", "set", peer, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("addr", "add", f"{address}/24", "dev", veth, ns=ns)
        _ip("link", "set", veth, "up", ns=ns)
        # LSL's discovery: multicast and broadcast go out on the lab's cable
        _ip("route", "add", "224.0.0.0/4", "dev", veth, ns=ns)
        _ip("route", "add", "255.255.255.255/32", "dev", veth, ns=ns, check=False)
        return host

    def remove(self) -> None:
        for host in self.hosts.values():
            _ip("netns", "del", host.ns, check=False)
        _ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def lab(*names: str) -> Iterator[Lab]:
    """Make one namespace per name on a fresh bridge; remove them all after."""
    tag = uuid.uuid4().hex[:5]
    net = int(tag, 16) % 200 + 20
    bridge = f"br{tag}"
    _ip("link", "add", bridge, "type", "bridge")
    # no IGMP querier on this bridge: flood multicast instead of snooping on it
    _ip("link", "set", bridge, "type", "bridge", "mcast_snooping", "0")
    _ip("link", "set", bridge, "up")
    made = Lab(tag, net, bridge)
    try:
        for name in names:
            made.add(name)
        yield made
    finally:
        made.remove()
