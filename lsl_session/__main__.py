"""Run the command line interface with ``python -m lsl_session``."""

import sys

try:
    from lsl_session.cli import main

    main()
except KeyboardInterrupt:  # Ctrl-C while the interpreter was still importing
    sys.stderr.write("Error: interrupted\n")
    sys.exit(130)
