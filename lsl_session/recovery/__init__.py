"""Crash recovery of session folders (SPEC §9)."""

from lsl_session.recovery.core import (
    RecoveryReport,
    diagnose_session,
    needs_recovery,
    recover_root,
    recover_session,
)
from lsl_session.recovery.eventlog import LogRepair, repair_event_log
from lsl_session.recovery.rebuild import check_files
from lsl_session.recovery.xdf_repair import XdfRepair, repair_xdf

__all__ = [
    "LogRepair",
    "RecoveryReport",
    "XdfRepair",
    "check_files",
    "diagnose_session",
    "needs_recovery",
    "recover_root",
    "recover_session",
    "repair_event_log",
    "repair_xdf",
]
