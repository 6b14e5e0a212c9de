"""Rig identity: which lab setup a stream belongs to (``[lab] rig``, docs/rigs.md).

Several rigs share one network (two rooms of a lab, a second person running the
demo). Every stream the lab orchestration creates carries its rig in the
source_id, ``lsl_session/<rig>/<device>/…``, and the recorder selects the rig's
own devices by exact source_id, so a recording never takes another rig's streams.
"""

from __future__ import annotations

import re
import secrets
import socket

from lsl_session.errors import ConfigError

#: A rig identity: safe in a source_id, in an XPath literal and in a file name.
RIG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def validate_rig(rig: str) -> str:
    """Return ``rig`` if it is a valid rig identity.

    Raises
    ------
    ConfigError
        If it is empty, longer than 64 characters or has other characters than
        letters, digits, ``.``, ``_`` and ``-`` (it goes into source_ids and
        LSL queries).
    """
    if not isinstance(rig, str) or not RIG_PATTERN.match(rig):
        raise ConfigError(
            f"invalid rig {rig!r}: 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return rig


def slug(text: str) -> str:
    """``text`` reduced to the characters a rig may hold (never empty)."""
    out = _UNSAFE.sub("-", text).strip("-._")
    return out or "rig"


def this_host() -> str:
    """The host name liblsl puts into every stream info's ``hostname``."""
    return socket.gethostname()


def default_rig(config_name: str | None = None) -> str:
    """``<hostname>-<config name>`` (the hostname alone without a config)."""
    parts = [slug(this_host())]
    if config_name:
        parts.append(slug(config_name))
    return "-".join(parts)[:48].rstrip("-._") or "rig"


def run_rig(base: str) -> str:
    """A rig identity unique to this run (demo, ``--simulate``): ``<base>-sim-<hex>``."""
    return f"{base[:48].rstrip('-._')}-sim-{secrets.token_hex(4)}"


def source_id(rig: str | None, *parts: str) -> str:
    """``lsl_session/<rig>/<part>/…`` (``lsl_session/<part>/…`` without a rig)."""
    return "/".join(["lsl_session", *([rig] if rig else []), *parts])


def exact_query(source_ids: list[str], hostname: str | None = None) -> str:
    """One query matching exactly these source_ids (and this host, if given)."""
    ids = " or ".join(f"source_id='{s}'" for s in source_ids)
    if len(source_ids) > 1:
        ids = f"({ids})"
    if hostname is None or "'" in hostname:
        return ids
    return f"{ids} and hostname='{hostname}'"
