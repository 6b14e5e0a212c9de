"""Clock accuracy of a phone *browser* through the relay, measured in real Chromium.

A headless Chromium opens the phone page (HTTPS + WebSocket, the relay's own
self-signed certificate) on loopback. Every 50 ms the script brackets the page's
clock, ``performance.timeOrigin + performance.now()`` (read over CDP
``Runtime.evaluate``), between two LSL ``local_clock()`` calls and compares the
relay's live mapping of that page time with the bracket midpoint. Brackets wider
than 3 ms are skipped; the median width is printed, since half of it bounds how
well one bracket can judge the mapping.

Scenarios: ``none`` (loopback as is) and ``fifo`` (an in-order TCP proxy between
page and relay adds a uniform 1-30 ms delay to every chunk in both directions,
delivered in order as TCP does, so later messages queue behind earlier ones).

    python benchmarks/phone_web_clock.py [--seconds 60] [--scenarios none,fifo]

Needs Debian's chromium (``apt-get install -y chromium``) and Playwright (dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
from playwright.sync_api import sync_playwright

from outlets.phone.relay import PhoneRelay
from outlets.phone.web import WebFront
from outlets.phone.web.cert import self_signed, server_context

#: Brackets wider than this say too little about the mapping (seconds).
MAX_BRACKET = 0.003
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--no-first-run"]  # fmt: skip


class FifoDelayProxy:
    """TCP proxy adding a random delay per chunk, each direction in order."""

    def __init__(self, target_port: int, low_ms: float, high_ms: float) -> None:
        self.target_port, self.low, self.high = target_port, low_ms, high_ms
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _pipe(self, reader, writer) -> None:
        due = 0.0
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, at - self.loop.time()))
                writer.write(data)

        task = asyncio.create_task(deliver())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                # in order: a chunk never overtakes the one before (head-of-line)
                delay = random.uniform(self.low, self.high) / 1e3
                due = max(due, self.loop.time() + delay)
                queue.put_nowait((due, data))
        queue.put_nowait((0.0, None))
        await task

    async def _client(self, reader, writer) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_w), self._pipe(up_r, writer), return_exceptions=True
        )


def measure(seconds: float, scenario: str) -> dict[str, float]:
    """Run one scenario; return p50/p99 of |error| (ms) and counts."""
    device, token = f"bench_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    tmp = Path(tempfile.mkdtemp(prefix="phone-web-clock-"))
    relay = PhoneRelay(tokens={device: token}).start()
    cert, key = self_signed(tmp, ["127.0.0.1"])
    front = WebFront(relay, ssl_context=server_context(cert, key)).start()
    port = front.port
    proxy = None
    if scenario == "fifo":
        proxy = FifoDelayProxy(front.port, 1.0, 30.0)
        port = proxy.port
    errors, widths = [], []
    try:
        with sync_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(f"https://127.0.0.1:{port}/#device={device}&token={token}")
            page.click("#start")
            end = time.monotonic() + 30
            while time.monotonic() < end:
                dev = relay.devices.get(device)
                if dev and dev.conn and dev.conn.est.ready:
                    break
                time.sleep(0.1)
            version = browser.version
            cdp = context.new_cdp_session(page)
            expression = {
                "expression": "(performance.timeOrigin + performance.now()) / 1000",
                "returnByValue": True,
            }
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                before = pylsl.local_clock()
                reply = cdp.send("Runtime.evaluate", expression)
                after = pylsl.local_clock()
                t_page = reply["result"]["value"]
                dev = relay.devices[device]
                ready = dev.conn is not None and dev.conn.est.ready
                if after - before < MAX_BRACKET and ready:
                    errors.append(
                        float(dev.conn.est.map(t_page)) - (before + after) / 2
                    )
                    widths.append(after - before)
                time.sleep(0.02)
            browser.close()
    finally:
        front.stop()
        relay.stop()
    err = np.abs(np.asarray(errors)) * 1e3
    return {
        "scenario": scenario,
        "chromium": version,
        "n": len(err),
        "p50_ms": float(np.percentile(err, 50)),
        "p99_ms": float(np.percentile(err, 99)),
        "bias_ms": float(np.median(errors) * 1e3),
        "bracket_ms": float(np.median(widths) * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--scenarios", default="none,fifo")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_version()}, "
          f"pylsl {pylsl.__version__}")  # fmt: skip
    print("| scenario | Chromium | samples | p50 ms | p99 ms | median signed ms"
          " | median bracket ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for scenario in args.scenarios.split(","):
        r = measure(args.seconds, scenario)
        print(f"| {r['scenario']} | {r['chromium']} | {r['n']} | {r['p50_ms']:.3f}"
              f" | {r['p99_ms']:.3f} | {r['bias_ms']:+.3f} | {r['bracket_ms']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
