"""Session config files (TOML or JSON): devices, streams to record, tokens, output root.

Every validation error names the file and the field, in one line.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.errors import ConfigError, InvalidNameError, QueryError
from lsl_session.lsl import validate_query

#: Device types whose connection is authenticated with a pairing token.
TOKEN_DEVICE_TYPES = frozenset({"android_phone"})
_TOP_LEVEL = {"session", "record", "devices"}


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device of a session config."""

    device_id: str
    device_type: str
    capabilities: tuple[str, ...] = ()
    token: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A validated session config."""

    path: Path
    name: str | None = None
    root: Path | None = None
    streams: list[str] | None = None
    split_mb: float | None = None
    devices: tuple[DeviceConfig, ...] = ()

    def tokens(self) -> dict[str, str]:
        """``{device_id: token}`` for the phone relay."""
        return {d.device_id: d.token for d in self.devices if d.token}


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
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    return data


def _table(path: Path, data: dict, key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: field '{key}' must be a table")
    return value


def _device(path: Path, index: int, raw: Any) -> DeviceConfig:
    where = f"{path}: devices[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    device_id = raw.get("id")
    try:
        layout.validate_device_id(device_id)
    except InvalidNameError as exc:
        raise ConfigError(f"{where}.id: {exc}") from None
    device_type = raw.get("type")
    if device_type not in layout.DEVICE_TYPES:
        raise ConfigError(
            f"{where}.type: unknown device type {device_type!r}"
            f" (known: {', '.join(sorted(layout.DEVICE_TYPES))})"
        )
    caps = raw.get("capabilities", [])
    if not isinstance(caps, list) or any(c not in layout.CAPABILITIES for c in caps):
        raise ConfigError(
            f"{where}.capabilities: {caps!r} (known: {', '.join(sorted(layout.CAPABILITIES))})"
        )
    token = raw.get("token")
    if device_type in TOKEN_DEVICE_TYPES and (not isinstance(token, str) or not token):
        raise ConfigError(
            f"{where}.token: a pairing token is required for {device_type}"
        )
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"{where}.token: must be a string")
    options = {
        k: v for k, v in raw.items() if k not in {"id", "type", "capabilities", "token"}
    }
    return DeviceConfig(device_id, device_type, tuple(caps), token, options)


def load_config(path: Path | str) -> SessionConfig:
    """Read and validate a session config.

    Raises
    ------
    ConfigError
        With the file and the field, for an unreadable file, a syntax error, an
        unknown device type, a missing token or a bad stream query.
    """
    path = Path(path)
    data = _read(path)
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    session = _table(path, data, "session")
    record = _table(path, data, "record")
    name = session.get("name")
    if name is not None:
        try:
            layout.sanitize_name(name)
        except InvalidNameError as exc:
            raise ConfigError(f"{path}: session.name: {exc}") from None
    root = session.get("root")
    if root is not None and not isinstance(root, str):
        raise ConfigError(f"{path}: session.root must be a string path")
    streams = record.get("streams")
    if streams is not None:
        if not isinstance(streams, list) or not all(
            isinstance(q, str) for q in streams
        ):
            raise ConfigError(f"{path}: record.streams must be a list of LSL queries")
        for i, query in enumerate(streams):
            try:
                validate_query(query)
            except QueryError as exc:
                raise ConfigError(f"{path}: record.streams[{i}]: {exc}") from None
    split_mb = record.get("split_mb")
    if split_mb is not None and (not isinstance(split_mb, int | float) or split_mb < 1):
        raise ConfigError(f"{path}: record.split_mb must be a number ≥ 1")
    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list):
        raise ConfigError(f"{path}: devices must be an array of tables")
    devices = tuple(_device(path, i, d) for i, d in enumerate(raw_devices))
    ids = [d.device_id for d in devices]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{path}: devices: duplicate device id")
    return SessionConfig(
        path=path,
        name=name,
        root=None
        if root is None
        else (path.parent / root if not Path(root).is_absolute() else Path(root)),
        streams=streams or None,
        split_mb=split_mb,
        devices=devices,
    )
