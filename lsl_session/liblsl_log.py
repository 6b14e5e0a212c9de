"""liblsl's own log through `logging` (WARNING and up), configured by liblsl's API."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator

import pylsl

#: liblsl (loguru) levels → logging levels; liblsl is told to log WARNING and up.
_LIBLSL_LEVELS = {
    "FATL": logging.CRITICAL,
    "ERR": logging.ERROR,
    "WARN": logging.WARNING,
}
_LIBLSL_LINE = re.compile(
    r"^\S+ \S+ \(\s*[\d.]+s\) \[[^\]]*\]\s+(\S+?):(\d+)\s+(\w+)\| (.*)$"
)
#: Longest liblsl message passed on; longer ones are cut.
_LIBLSL_MAX_CHARS = 300
#: At most this many messages per source line of liblsl per minute, then a summary.
_LIBLSL_BURST = 10

liblsl_logger = logging.getLogger("lsl_session.liblsl")

#: Expected notices liblsl reports as errors, logged at INFO instead (a host or
#: container with loopback only: streams on this machine still resolve).
_NOTICES = ("No local network interface addresses found",)


class _LiblslLogPump:
    """Tail the file liblsl logs to and re-emit each line through `logging`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pos = 0
        self._window: dict[str, list[float]] = {}
        self._suppressed: dict[str, int] = {}
        thread = threading.Thread(target=self._run, name="liblsl-log", daemon=True)
        thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                self.pump()

    def pump(self) -> None:
        """Read the new lines (also called at exit)."""
        with open(self.path, "rb") as fh:
            fh.seek(self._pos)
            data = fh.read(1 << 20)
        end = data.rfind(b"\n") + 1
        self._pos += end
        for raw in data[:end].decode("utf-8", "replace").splitlines():
            self._emit(raw)
        if self._pos > (1 << 20):  # liblsl appends (O_APPEND): start over
            os.truncate(self.path, 0)
            self._pos = 0

    def _emit(self, raw: str) -> None:
        match = _LIBLSL_LINE.match(raw)
        if match is None:
            return  # loguru's header and blank lines
        where, level, text = f"{match.group(1)}:{match.group(2)}", match[3], match[4]
        if level not in _LIBLSL_LEVELS:
            return
        now = time.monotonic()
        recent = [t for t in self._window.get(where, []) if now - t < 60.0]
        if len(recent) >= _LIBLSL_BURST:
            self._suppressed[where] = self._suppressed.get(where, 0) + 1
            self._window[where] = recent
            return
        self._window[where] = [*recent, now]
        skipped = self._suppressed.pop(where, 0)
        suffix = f" ({skipped} similar messages suppressed)" if skipped else ""
        if len(text) > _LIBLSL_MAX_CHARS:
            text = text[:_LIBLSL_MAX_CHARS] + "…"
        level_no = _LIBLSL_LEVELS[level]
        if text.startswith(_NOTICES):
            level_no = logging.INFO
        liblsl_logger.log(level_no, "liblsl: %s%s", text, suffix)


_pump: _LiblslLogPump | None = None


def route_liblsl_log() -> bool:
    """Send liblsl's log (WARNING and up) through `logging`, not to stderr.

    Uses liblsl's API config (``lsl_set_config_content``: ``[log] level = -1``
    and a private log file, which also keeps liblsl off stderr); a thread
    re-emits each line on the ``lsl_session.liblsl`` logger, cut to 300
    characters and at most 10 per liblsl source line per minute. Call before
    any other liblsl use: liblsl reads its config once. Returns False if the
    config could not be set (liblsl then logs to stderr as usual).
    """
    global _pump
    if _pump is not None:
        return True
    if os.environ.get("LSLAPICFG"):
        return False  # the user's own liblsl config decides
    fd, path = tempfile.mkstemp(prefix="lsl_session-liblsl-", suffix=".log")
    os.close(fd)
    content = f"[log]\nlevel = -1\nfile = {path}\n"
    lib = pylsl.lib.lib
    try:
        lib.lsl_set_config_content(content.encode())
        # load the config now, with fd 2 muted: loguru announces the new log
        # file on stderr before liblsl turns its stderr output off
        with _muted_stderr():
            lib.lsl_protocol_version()
    except Exception:
        os.unlink(path)
        return False
    _pump = _LiblslLogPump(path)
    atexit.register(_close_pump, path)
    return True


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _close_pump(path: str) -> None:
    if _pump is not None:
        with contextlib.suppress(OSError):
            _pump.pump()
    with contextlib.suppress(OSError):
        os.unlink(path)
