"""Python's full garbage collections kept off the widget tree while a reply streams.

Each full collection walks every widget, and a growing reply triggers them again and
again (a quarter of the frame time in the TUI benchmark). Objects are frozen while a
reply streams and unfrozen a moment after it ends, when the one full collection that
follows costs nothing visible; so nothing leaks.
"""

from __future__ import annotations

import gc
from typing import Any

from textual.timer import Timer

GC_FREEZE_S = 0.25
"""How often new objects are frozen while a reply streams."""
GC_RELEASE_S = 2.0
"""How long after a reply the frozen objects are handed back to the collector."""


class GcHold:
    """Freezes the collector's view of the app while a reply streams.

    Args:
        app: The app whose timers run the freezing.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._timer: Timer | None = None

    def streaming(self, streaming: bool) -> None:
        """A reply starts (True) or ends (False)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if streaming:
            gc.freeze()
            # A lambda: Textual inspects a callback's parameters, which a builtin has not.
            self._timer = self._app.set_interval(GC_FREEZE_S, lambda: gc.freeze())
        else:
            self._timer = self._app.set_timer(GC_RELEASE_S, self._release)

    def _release(self) -> None:
        self._timer = None
        gc.unfreeze()
