"""The live device table: which devices stream, what the recorder got from each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from lsl_session.lab.devices import DeviceRunner


def device_rows(
    devices: list[DeviceRunner], recorder_status: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One row per device: state, streams and samples recorded so far.

    Parameters
    ----------
    devices : list of DeviceRunner
        The lab's devices.
    recorder_status : dict | None
        `Recorder.status()` while recording.

    Returns
    -------
    list of dict
        ``device``, ``kind``, ``state`` (``streaming``, ``waiting``, ``failed``,
        ``ended``),
        ``required``, ``streams``, ``samples``, ``detail``.
    """
    streams = (recorder_status or {}).get("streams", [])
    rows = []
    for dev in devices:
        mine = [s for s in streams if dev.owns(s["name"])]
        if dev.error:
            state = "failed"
        elif dev.ended():
            state = "ended"
        elif dev.streaming():
            state = "streaming"
        else:
            state = "waiting"
        rows.append(
            {
                "device": dev.device_id,
                "kind": dev.kind,
                "state": state,
                "required": dev.required,
                "streams": len(mine),
                "samples": sum(int(s["samples"]) for s in mine),
                "detail": dev.error or dev.detail(),
            }
        )
    return rows


def device_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Render `device_rows` as a rich table."""
    table = Table(title=title, title_justify="left", expand=False)
    for column, justify in (
        ("device", "left"),
        ("kind", "left"),
        ("state", "left"),
        ("streams", "right"),
        ("samples", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)
    colour = {
        "streaming": "green",
        "waiting": "yellow",
        "failed": "red",
        "ended": "blue",
    }
    for r in rows:
        name = r["device"] + (" *" if r["required"] else "")
        table.add_row(
            name,
            r["kind"],
            f"[{colour[r['state']]}]{r['state']}[/]",
            str(r["streams"]),
            str(r["samples"]),
            str(r["detail"])[:60],
        )
    return table


def plain_lines(rows: list[dict[str, Any]], header: str) -> list[str]:
    """The table as plain lines, for logs and non-interactive output."""
    lines = [header]
    for r in rows:
        lines.append(
            f"  {r['device'] + (' *' if r['required'] else ''):<20} {r['kind']:<14}"
            f" {r['state']:<10} {r['streams']:>2} streams {r['samples']:>9} samples"
            f"  {str(r['detail'])[:50]}"
        )
    return lines
