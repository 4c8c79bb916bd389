"""The console-script entry point, kept import-free so that Ctrl+C while Python is still
importing the CLI ends quietly with exit code 130 instead of a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the CLI and run it."""
    try:
        from gemma_chat.cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(130)
    cli_main()
