"""Run the command line interface with ``python -m lsl_session``."""

from lsl_session.cli import main

main()
