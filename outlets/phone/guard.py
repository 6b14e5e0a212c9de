"""Rate limiting of the relay's error log and throttling of failed hellos (pure).

Both take the current time as an argument (no clock inside), so tests drive them
deterministically, and both remember at most ``max_keys`` keys (the oldest key
is forgotten first), so a peer cycling addresses cannot grow them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Window:
    start: float
    count: int = 0
    suppressed: int = 0


class LogLimiter:
    """Admit at most ``burst`` entries per key and ``total`` overall per window.

    Parameters
    ----------
    burst : int
        Entries admitted per key and window.
    total : int
        Entries admitted per window over all keys.
    window_s : float
        Window length, seconds.
    max_keys : int
        Keys remembered; beyond, the oldest window is summarised and forgotten.
    """

    def __init__(
        self, *, burst: int, total: int, window_s: float, max_keys: int
    ) -> None:
        self.burst, self.total, self.window_s = int(burst), int(total), window_s
        self.max_keys = int(max_keys)
        self._keys: OrderedDict[Hashable, _Window] = OrderedDict()
        self._total = _Window(-float("inf"))
        self._evicted: list[tuple[Hashable, int]] = []

    def admit(self, key: Hashable, now: float) -> bool:
        """Return True if an entry for ``key`` may be logged now (and count it)."""
        if now - self._total.start >= self.window_s:
            self._total = _Window(now)
        win = self._keys.get(key)
        if win is None or now - win.start >= self.window_s:
            if win is not None and win.suppressed:
                self._evicted.append((key, win.suppressed))
            win = _Window(now)
            self._keys[key] = win
            while len(self._keys) > self.max_keys:
                old_key, old = self._keys.popitem(last=False)
                if old.suppressed:
                    self._evicted.append((old_key, old.suppressed))
            if len(self._evicted) > self.max_keys:  # summaries themselves bounded
                self._evicted = self._evicted[-self.max_keys :]
        self._keys.move_to_end(key)
        if win.count < self.burst and self._total.count < self.total:
            win.count += 1
            self._total.count += 1
            return True
        win.suppressed += 1
        return False

    def due(
        self, now: float, *, everything: bool = False
    ) -> list[tuple[Hashable, int]]:
        """Return ``(key, suppressed)`` of windows that ended (all if ``everything``)."""
        out, self._evicted = self._evicted, []
        for key, win in list(self._keys.items()):
            if everything or now - win.start >= self.window_s:
                if win.suppressed:
                    out.append((key, win.suppressed))
                del self._keys[key]
        return out


def host_key(host: str) -> str:
    """The key a peer is counted under: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    """Per-host count of failed hellos and the wait before answering the next.

    The first ``free`` failures of a host within ``window_s`` are answered at
    once; each further one waits ``delay`` seconds, doubling up to ``max_delay``.
    A correct hello is never delayed, so a paired phone behind the same address
    still connects.
    """

    def __init__(
        self,
        *,
        free: int,
        window_s: float,
        delay: float,
        max_delay: float,
        max_keys: int,
    ) -> None:
        self.free, self.window_s = int(free), float(window_s)
        self.delay, self.max_delay = float(delay), float(max_delay)
        self.max_keys = int(max_keys)
        self._hosts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def failure(self, host: str, now: float) -> float:
        """Count a failed hello from ``host``; return the seconds to wait before replying."""
        start, n = self._hosts.get(host, (now, 0))
        if now - start >= self.window_s:
            start, n = now, 0
        n += 1
        self._hosts[host] = (start, n)
        self._hosts.move_to_end(host)
        while len(self._hosts) > self.max_keys:
            self._hosts.popitem(last=False)
        if n <= self.free:
            return 0.0
        return min(self.max_delay, self.delay * 2 ** min(n - self.free - 1, 32))

    def failures(self, host: str) -> int:
        """Failed hellos counted for ``host`` in its current window."""
        return self._hosts.get(host, (0.0, 0))[1]
