"""SIGTERM and SIGHUP end the app as Ctrl+Q does, with exit code 128 + the signal."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end the app like Ctrl+Q (the exit code is 128 + the signal's number)."""


def end_on_signals(app: Any) -> None:
    """From now on, a stop signal quits ``app`` (call it on mount, in the event loop).

    The handler runs in the event loop, not inside the signal handler: quitting as with
    Ctrl+Q keeps the partial reply (saved, marked partial) and gives the terminal back
    (alternate screen left, mouse tracking off).
    """
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, lambda n=signum: app.exit(return_code=128 + n))
