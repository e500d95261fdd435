"""`python tools/export.py` from a checkout: the same command as the installed `paddle-lrnn-export` (the code is in
paddle_lrnn/cli/export.py; --help lists the flags)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from paddle_lrnn.cli.export import cli, main  # noqa: E402,F401  (main: for callers that load this file)

if __name__ == "__main__":
    cli()
