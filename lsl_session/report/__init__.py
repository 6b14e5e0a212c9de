"""The session report: ``processing/report.html`` with plots, and the verdict line."""

from lsl_session.report.build import REPORT_NAME, write_report
from lsl_session.report.verdict import Verdict, session_verdict

__all__ = ["REPORT_NAME", "Verdict", "session_verdict", "write_report"]
