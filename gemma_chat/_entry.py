"""The console-script entry point, kept import-free so that Ctrl+C while Python is still
importing the CLI ends quietly with exit code 130 instead of a traceback."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Import the CLI and run it; exit with its status, or 130 for a Ctrl+C anywhere."""
    try:
        code = _run()
    except KeyboardInterrupt:  # while importing, or between the CLI's own handlers
        code = 130
    # The exit status is decided. Python's finalization puts SIGINT back to SIG_DFL (a
    # handler it installed; an ignored signal stays ignored), so a Ctrl+C pressed while
    # it runs (freeing the model takes a while) would kill the process by the signal,
    # exit -2, instead of ending with this status. A KeyboardInterrupt that lands
    # before the ignore takes effect only repeats it.
    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            code = 130
    sys.exit(code)


def _run() -> int | str | None:
    try:
        from gemma_chat.cli import main as cli_main

        cli_main()
    except SystemExit as exc:
        return exc.code
    return 0
