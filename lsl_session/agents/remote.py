"""Devices of other hosts as rows of the recorder host's lab run.

A `RemoteDeviceRunner` stands for a device its agent runs: it starts and stops
nothing (the agent does), reports what the agent last said, and gives the
recorder the device's stream queries (the same as on its own host). An
`AgentRunner` is the host itself: ``streaming`` while its agent is connected,
required when any of its devices is.
"""

from __future__ import annotations

from pathlib import Path

from lsl_session.agents.hub import AgentHub, AgentLink, DeviceReport
from lsl_session.config import DeviceConfig
from lsl_session.lab.devices import DeviceRunner, ShimmerRunner, SyncClock, WebcamRunner

#: Device kinds an agent can run.
AGENT_KINDS: dict[str, type[DeviceRunner]] = {
    "pc_webcam": WebcamRunner,
    "shimmer_gsr": ShimmerRunner,
}


class RemoteDeviceRunner(DeviceRunner):
    """A device on another host (see the module doc)."""

    def __init__(
        self, config: DeviceConfig, link: AgentLink, rig: str | None = None
    ) -> None:
        super().__init__(config, rig)
        self.inner = AGENT_KINDS[config.device_type](config, rig)
        self.kind = self.inner.kind
        self.link = link

    @property  # type: ignore[override]
    def error(self) -> str | None:
        return self._report().error if self.link.connected else None

    @error.setter
    def error(self, value: str | None) -> None:
        pass  # set by the agent only

    def _report(self) -> DeviceReport:
        return self.link.devices.get(self.device_id) or DeviceReport()

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        """Nothing here: the agent starts it when the hub says ``start``."""

    def streaming(self) -> bool:
        return self.link.connected and self._report().streaming

    def connections(self) -> int:
        return self._report().connections

    def owns(self, stream_name: str) -> bool:
        return self.inner.owns(stream_name)

    def queries(self) -> list[str]:
        return self.inner.queries()

    def source_ids(self) -> list[str]:
        return list(self._report().source_ids)

    def detail(self) -> str:
        if not self.link.connected:
            return f"on {self.link.host}: agent not connected"
        return f"on {self.link.host}: {self._report().detail}"


class AgentRunner(DeviceRunner):
    """The agent of one host, as a row that is waited for like a device."""

    kind = "agent"

    def __init__(self, link: AgentLink, required: bool) -> None:
        super().__init__(DeviceConfig(link.host, "agent", required=required))
        self.link = link

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        """Nothing: the agent connects by itself."""

    def streaming(self) -> bool:
        return self.link.connected

    def detail(self) -> str:
        return self.link.address if self.link.connected else "not connected"


def remote_runners(hub: AgentHub) -> list[DeviceRunner]:
    """One `AgentRunner` per host, then its devices, in config order."""
    out: list[DeviceRunner] = []
    for host, link in hub.links.items():
        mine = [d for d in hub.config.devices if d.host == host]
        out.append(AgentRunner(link, required=any(d.required for d in mine)))
        out += [
            RemoteDeviceRunner(d, link, hub.config.rig)
            for d in mine
            if d.device_type in AGENT_KINDS
        ]
    return out
