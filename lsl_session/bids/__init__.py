"""BIDS export of LSL sessions (EEG via mne-bids, physio, motion, events)."""

from lsl_session.bids.export import export_bids

__all__ = ["export_bids"]
