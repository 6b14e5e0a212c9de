"""``outlet``: the device outlets and simulators of the ``outlets`` package.

The sub-commands are imported only when invoked, so ``lsl-session --help`` stays
fast and the core never imports ``outlets`` at import time.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

#: sub-command name → "module:attribute" of its click command.
OUTLET_COMMANDS: dict[str, str] = {
    "markers": "outlets.markers.cli:markers",
    "webcam": "outlets.webcam.cli:webcam",
    "shimmer": "outlets.shimmer.cli:shimmer_command",
    "phone-relay": "outlets.phone.cli:phone_relay_command",
    "phone-sim": "outlets.phone.cli:phone_sim_command",
    "simulate": "outlets.simulate:simulate_command",
}


def _available(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.split(":")[0]) is not None
    except ModuleNotFoundError:
        return False


class LazyOutletGroup(click.Group):
    """A group whose commands live in the ``outlets`` package, loaded on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, t in OUTLET_COMMANDS.items() if _available(t))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = OUTLET_COMMANDS.get(cmd_name)
        if target is None or not _available(target):
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)


@click.group(
    "outlet",
    cls=LazyOutletGroup,
    epilog="\b\nExamples:\n  lsl-session outlet simulate --phones 2\n"
    "  lsl-session outlet shimmer --emulate --duration 60",
)
def outlet_group() -> None:
    """Run a device outlet or simulator (markers, webcam, shimmer, phones)."""
