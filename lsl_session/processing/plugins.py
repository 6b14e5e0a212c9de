"""Processor discovery: the built-ins and the ``lsl_session.processors`` entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsl_session.processing.model import Processor

logger = logging.getLogger(__name__)

GROUP = "lsl_session.processors"

#: Built-in processors by name → ``module:attribute`` (imported lazily).
BUILTINS: dict[str, str] = {
    "sync_check": "lsl_session.processing.sync_check:SyncCheckProcessor",
    "hand_segmentation": "lsl_session.processing.hands:HandSegmentationProcessor",
    "thermal_registration": (
        "lsl_session.calibration.thermal:ThermalRegistrationProcessor"
    ),
}


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """A processor that can be loaded: its name, where it comes from, a loader."""

    name: str
    origin: str  # "builtin" or "entry point <dist>: <value>"
    target: str  # "module:attribute"
    loader: Callable[[], Any]

    def load(self) -> Processor:
        """Import and instantiate the processor.

        Raises
        ------
        Exception
            Whatever importing or constructing raises; ``TypeError`` if the object
            is not a processor (no ``run``).
        """
        return instantiate(self.loader(), self.name)


def instantiate(obj: Any, default_name: str) -> Processor:
    """Turn an entry point's object (class, factory or instance) into a processor."""
    if not callable(getattr(obj, "run", None)) or isinstance(obj, type):
        obj = obj()
    if not callable(getattr(obj, "run", None)):
        raise TypeError(f"{default_name}: {type(obj).__name__} has no run(context)")
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        try:
            obj.name = default_name
        except AttributeError:
            pass
    return obj


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def builtin_specs(names: list[str]) -> list[ProcessorSpec]:
    """Specs of the named built-in processors."""
    return [
        ProcessorSpec(n, "builtin", BUILTINS[n], lambda t=BUILTINS[n]: _import(t))
        for n in names
    ]


def entry_point_specs() -> list[ProcessorSpec]:
    """Specs of every processor registered under :data:`GROUP` (first name wins)."""
    specs: list[ProcessorSpec] = []
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.name in seen:
            logger.warning("duplicate processor entry point %r ignored", ep.name)
            continue
        seen.add(ep.name)
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        specs.append(ProcessorSpec(ep.name, f"entry point {dist}", ep.value, ep.load))
    return specs


def discover(*, builtins: list[str]) -> list[ProcessorSpec]:
    """Built-ins first, then entry points whose name is not a built-in's."""
    specs = builtin_specs(builtins)
    names = set(BUILTINS)
    specs += [s for s in entry_point_specs() if s.name not in names]
    return specs
