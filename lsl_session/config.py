"""Session configs (TOML or JSON): the lab's devices, what to record, relay, timeouts.

Every validation error names the file and the field, in one line; the whole file is
checked before anything starts. The schema is documented in ``docs/configs.md``.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.agents.settings import (
    AGENTS_FIELDS,
    HOST_NAME,
    AgentsConfig,
    parse_agents,
)
from lsl_session.errors import ConfigError, InvalidNameError, QueryError
from lsl_session.lsl import validate_query

#: Device types whose connection is authenticated with a pairing token.
TOKEN_DEVICE_TYPES = frozenset({"android_phone"})
_TOP_LEVEL = {
    "session", "record", "relay", "markers", "simulate", "devices", "dashboard",
    "agents", "lab",
}  # fmt: skip
_LAB_FIELDS = {"rig"}
_SESSION_FIELDS = {"name", "root"}
_RECORD_FIELDS = {
    "streams",
    "split_mb",
    "compress",
    "duration_s",
    "wait_s",
    "upload_timeout_s",
    "process",
    "clock_offset_every_s",
}
_RELAY_FIELDS = {
    "host", "port", "certfile", "keyfile", "heartbeat_timeout_s", "web", "web_port",
}  # fmt: skip
_MARKER_FIELDS = {"name", "sync_every_s", "stdin"}
_DASHBOARD_FIELDS = {"enabled", "host", "port", "token"}
_SIMULATE_FIELDS = {"sync_every_s"}
_COMMON_DEVICE_FIELDS = {
    "id", "type", "capabilities", "token", "required", "simulate", "host",
}  # fmt: skip
#: Extra fields per device type (simulated phones also take clock settings).
_DEVICE_FIELDS = {
    "android_phone": {"clock_offset_s", "drift_ppm", "jitter_ms"},
    "shimmer_gsr": {"port", "rate"},
    "pc_webcam": {"device", "file", "fps", "index"},
    "thermal_camera": set(),
}
_TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device of a session config.

    ``options`` holds the type-specific fields (``port``, ``rate``, ``device``,
    ``file``, ``fps``, ``index``, ``clock_offset_s``, ``drift_ppm``,
    ``jitter_ms``), validated; relative ``file`` paths are resolved against the
    config file's folder.
    """

    device_id: str
    device_type: str
    capabilities: tuple[str, ...] = ()
    token: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = False
    simulate: bool = False
    #: The lab computer that runs the device (None: the recorder's machine).
    host: str | None = None


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The phone relay's listening address, TLS files and heartbeat timeout."""

    host: str = "0.0.0.0"
    port: int = 9000
    certfile: Path | None = None
    keyfile: Path | None = None
    heartbeat_timeout_s: float = 2.5
    web: bool = False
    web_port: int = 9443


@dataclass(frozen=True, slots=True)
class MarkerConfig:
    """The stimulus marker outlet the lab starts (``[markers]``)."""

    name: str = "StimulusMarkers"
    sync_every_s: float | None = None
    stdin: bool = False


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """The live dashboard (``[dashboard]``; ``record --dashboard`` turns it on)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A validated session config."""

    path: Path
    name: str | None = None
    root: Path | None = None
    streams: list[str] | None = None
    split_mb: float | None = None
    compress: bool = False
    devices: tuple[DeviceConfig, ...] = ()
    duration_s: float | None = None
    wait_s: float = 30.0
    upload_timeout_s: float = 60.0
    process: bool = True
    #: Seconds between two clock-offset measurements per stream.
    clock_offset_every_s: float = 5.0
    relay: RelayConfig = field(default_factory=RelayConfig)
    markers: MarkerConfig | None = None
    sync_every_s: float = 4.0
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    #: The rig identity (``[lab] rig``; default ``<hostname>-<config name>``;
    #: unique to the run when simulated, see `lsl_session.rig`).
    rig: str = "rig"
    agents: AgentsConfig = field(default_factory=AgentsConfig)

    def hosts(self) -> list[str]:
        """The other computers named by devices (``host = ...``), sorted."""
        return sorted({d.host for d in self.devices if d.host})

    def tokens(self) -> dict[str, str]:
        """``{device_id: token}`` for the phone relay."""
        return {d.device_id: d.token for d in self.devices if d.token}

    def devices_of(self, device_type: str) -> list[DeviceConfig]:
        """The devices of one type, in file order."""
        return [d for d in self.devices if d.device_type == device_type]


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {reason}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    return data


class _Fields:
    """Typed access to one table, raising `ConfigError` naming ``where.key``."""

    def __init__(self, path: Path, where: str, raw: Any, allowed: set[str]) -> None:
        self.path, self.where = path, where
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(
                f"{path}: {where}: unknown field(s) {', '.join(map(repr, unknown))}"
                f" (known: {', '.join(sorted(allowed))})"
            )
        self.raw = raw

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where}.{key}: {message}")

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(key, f"must be finite, not {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, not {value!r}")
        if low is not None and value < low:
            raise self.fail(key, f"must be ≥ {low:g}, not {value!r}")
        if high is not None and value > high:
            raise self.fail(key, f"must be ≤ {high:g}, not {value!r}")
        return float(value)

    def integer(
        self, key: str, default: int | None = None, *, low: int = 0, high: int
    ) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be in {low}…{high}, not {value!r}")
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value or "\x00" in value:
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def file(self, key: str, *, must_exist: bool = True) -> Path | None:
        value = self.string(key)
        if value is None:
            return None
        file = Path(value).expanduser()
        if not file.is_absolute():
            file = self.path.parent / file
        if must_exist and not file.is_file():
            raise self.fail(key, f"no such file {str(file)!r}")
        return file


def _device(path: Path, index: int, raw: Any) -> DeviceConfig:
    where = f"devices[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    device_type = raw.get("type")
    if device_type not in layout.DEVICE_TYPES:
        raise ConfigError(
            f"{path}: {where}.type: unknown device type {device_type!r}"
            f" (known: {', '.join(sorted(layout.DEVICE_TYPES))})"
        )
    extra = _DEVICE_FIELDS.get(device_type, set())
    f = _Fields(path, where, raw, _COMMON_DEVICE_FIELDS | extra)
    device_id = raw.get("id")
    try:
        layout.validate_device_id(device_id)
    except InvalidNameError as exc:
        raise f.fail("id", str(exc)) from None
    caps = raw.get("capabilities", [])
    if not isinstance(caps, list) or any(c not in layout.CAPABILITIES for c in caps):
        raise f.fail(
            "capabilities",
            f"{caps!r} (known: {', '.join(sorted(layout.CAPABILITIES))})",
        )
    token = raw.get("token")
    if device_type in TOKEN_DEVICE_TYPES and (not isinstance(token, str) or not token):
        raise f.fail("token", f"a pairing token is required for {device_type}")
    if token is not None and not isinstance(token, str):
        raise f.fail("token", "must be a string")
    simulate = f.flag("simulate")
    host = f.string("host")
    if host is not None and not HOST_NAME.match(host):
        raise f.fail("host", f"{host!r} is not a host name (letters, digits, . _ -)")
    if host is not None and device_type in TOKEN_DEVICE_TYPES:
        raise f.fail("host", "phones connect to the relay; give them no host")
    # a file on another host is checked there, when its agent starts it
    options = _device_options(f, device_type, device_id, simulate or bool(host))
    return DeviceConfig(
        device_id,
        device_type,
        tuple(caps),
        token,
        options,
        required=f.flag("required"),
        simulate=simulate,
        host=host,
    )


def _device_options(
    f: _Fields, device_type: str, device_id: str, simulate: bool
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if device_type == "shimmer_gsr":
        options["port"] = f.string("port")
        options["rate"] = f.number("rate", 128.0, low=1.0, high=1024.0)
    elif device_type == "pc_webcam":
        device = f.integer("device", low=0, high=255)
        file = f.file("file", must_exist=not simulate)
        if device is not None and file is not None:
            raise f.fail("file", "give either 'device' or 'file', not both")
        options["device"], options["file"] = device, file
        options["fps"] = f.number("fps", low=0.1, high=1000.0)
        number = _TRAILING_NUMBER.search(device_id)
        options["index"] = f.integer(
            "index", int(number.group(1)) if number else 1, high=999
        )
    elif device_type == "android_phone":
        options["clock_offset_s"] = f.number("clock_offset_s", 0.0)
        options["drift_ppm"] = f.number("drift_ppm", 0.0, low=-1000, high=1000)
        options["jitter_ms"] = f.number("jitter_ms", 30.0, low=0.0, high=1000.0)
    return options


def _check_runnable(path: Path, devices: tuple[DeviceConfig, ...]) -> None:
    """The fields a real (not simulated) device needs to start."""
    for i, d in enumerate(devices):
        if d.simulate:
            continue
        if d.device_type == "shimmer_gsr" and not d.options.get("port"):
            raise ConfigError(
                f"{path}: devices[{i}].port: a serial port is required for"
                " shimmer_gsr (e.g. /dev/rfcomm0), or simulate = true"
            )
        if d.device_type == "pc_webcam" and (
            d.options.get("device") is None and d.options.get("file") is None
        ):
            raise ConfigError(
                f"{path}: devices[{i}].device: give a camera index 'device' or a"
                " video 'file', or simulate = true"
            )


def load_config(path: Path | str, *, simulate: bool = False) -> SessionConfig:
    """Read and validate a session config.

    Parameters
    ----------
    path : Path | str
        The TOML or JSON file.
    simulate : bool
        Treat every device as ``simulate = true`` (``record --simulate``).

    Raises
    ------
    ConfigError
        One line with the file and the field, for an unreadable file, a syntax
        error, an unknown table or field, a value of the wrong type or range, an
        unknown device type, a missing token or port, or a bad stream query.
    """
    path = Path(path)
    data = _read(path)
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    session = _Fields(path, "session", data.get("session", {}), _SESSION_FIELDS)
    record = _Fields(path, "record", data.get("record", {}), _RECORD_FIELDS)
    name = session.string("name")
    if name is not None:
        try:
            layout.sanitize_name(name)
        except InvalidNameError as exc:
            raise session.fail("name", str(exc)) from None
    root = session.raw.get("root")
    if root is not None and not isinstance(root, str):
        raise session.fail("root", "must be a string path")
    streams = record.raw.get("streams")
    if streams is not None:
        if not isinstance(streams, list) or not all(
            isinstance(q, str) for q in streams
        ):
            raise record.fail("streams", "must be a list of LSL queries")
        for i, query in enumerate(streams):
            try:
                validate_query(query)
            except QueryError as exc:
                raise ConfigError(f"{path}: record.streams[{i}]: {exc}") from None
    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list):
        raise ConfigError(f"{path}: devices must be an array of tables")
    devices = tuple(_device(path, i, d) for i, d in enumerate(raw_devices))
    if simulate:
        devices = tuple(
            DeviceConfig(
                d.device_id,
                d.device_type,
                d.capabilities,
                d.token,
                d.options,
                required=d.required,
                simulate=True,
                host=d.host,
            )
            for d in devices
        )
    ids = [d.device_id for d in devices]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"{path}: devices: duplicate device id {', '.join(dup)}")
    _check_runnable(path, devices)
    return SessionConfig(
        rig=_rig(
            path,
            data.get("lab", {}),
            simulate=simulate,
            all_simulated=bool(devices) and all(d.simulate for d in devices),
        ),
        path=path,
        name=name,
        root=None
        if root is None
        else (path.parent / root if not Path(root).is_absolute() else Path(root)),
        streams=streams or None,
        split_mb=record.number("split_mb", low=1.0),
        compress=record.flag("compress", False),
        devices=devices,
        duration_s=record.number("duration_s", positive=True),
        wait_s=record.number("wait_s", 30.0, low=0.0, high=3600.0),
        upload_timeout_s=record.number("upload_timeout_s", 60.0, low=0.0, high=86400),
        process=record.flag("process", True),
        clock_offset_every_s=record.number(
            "clock_offset_every_s", 5.0, low=0.1, high=60.0
        ),
        relay=_relay(path, data.get("relay", {})),
        markers=_markers(path, data.get("markers")),
        sync_every_s=_Fields(
            path, "simulate", data.get("simulate", {}), _SIMULATE_FIELDS
        ).number("sync_every_s", 4.0, low=0.5, high=3600.0),
        dashboard=_dashboard(path, data.get("dashboard", {})),
        agents=parse_agents(
            _Fields(path, "agents", data.get("agents", {}), AGENTS_FIELDS),
            {d.host for d in devices if d.host},
        ),
    )


def _rig(path: Path, raw: Any, *, simulate: bool, all_simulated: bool) -> str:
    """``[lab] rig``, or ``<hostname>-<config name>``; unique to a simulated run.

    ``--simulate`` always gives the run a rig of its own; so does a config whose
    devices are all simulated and which names no rig (the demo config), so any
    number of demos run at once on one network.
    """
    from lsl_session.rig import default_rig, run_rig, validate_rig

    f = _Fields(path, "lab", raw, _LAB_FIELDS)
    rig = f.string("rig")
    explicit = rig is not None
    if rig is None:
        rig = default_rig(path.stem)
    else:
        try:
            validate_rig(rig)
        except ConfigError as exc:
            raise f.fail("rig", str(exc).removeprefix("invalid rig ")) from None
    if simulate or (all_simulated and not explicit):
        return run_rig(rig)
    return rig


def _dashboard(path: Path, raw: Any) -> DashboardConfig:
    from lsl_session.control.server import is_loopback

    f = _Fields(path, "dashboard", raw, _DASHBOARD_FIELDS)
    host = f.string("host", "127.0.0.1")
    token = f.string("token")
    if not is_loopback(host) and token is None:
        raise f.fail("host", f"non-loopback {host!r} needs a 'token'")
    return DashboardConfig(
        enabled=f.flag("enabled"),
        host=host,
        port=f.integer("port", 8765, high=65535),
        token=token,
    )


def _relay(path: Path, raw: Any) -> RelayConfig:
    f = _Fields(path, "relay", raw, _RELAY_FIELDS)
    certfile, keyfile = f.file("certfile"), f.file("keyfile")
    if keyfile is not None and certfile is None:
        raise f.fail("keyfile", "needs 'certfile' too")
    return RelayConfig(
        host=f.string("host", "0.0.0.0"),
        port=f.integer("port", 9000, high=65535),
        certfile=certfile,
        keyfile=keyfile,
        heartbeat_timeout_s=f.number("heartbeat_timeout_s", 2.5, low=0.1, high=3.0),
        web=f.flag("web"),
        web_port=f.integer("web_port", 9443, high=65535),
    )


def _markers(path: Path, raw: Any) -> MarkerConfig | None:
    if raw is None:
        return None
    f = _Fields(path, "markers", raw, _MARKER_FIELDS)
    return MarkerConfig(
        name=f.string("name", "StimulusMarkers"),
        sync_every_s=f.number("sync_every_s", low=0.5, high=3600.0),
        stdin=f.flag("stdin"),
    )
