"""Python's full garbage collections kept off the widget tree while a reply streams.

Each full collection walks every widget, and a growing reply triggers them again and
again (a quarter of the frame time in the TUI benchmark, 100-250 ms a pause). While a
reply streams and until its widget has rendered the last of it (a fast model finishes
long before the screen does), full collections are not started, and objects are frozen
so that one started anyway (by another Python, or by ``gc.collect()``) walks only what
is new. Young collections still run, so short-lived cycles are freed as usual. A moment
after the reply is rendered the collector gets everything back, so nothing leaks; the
full collection that follows, whenever it comes, walks everything the reply left (about
0.3 s after 5,000 tokens and 0.8 s after 20,000 in a debug run of the TUI bench on this
machine), once instead of several times while the reply streams.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from textual.timer import Timer

GC_FREEZE_S = 0.25
"""How often new objects are frozen while a reply streams."""
GC_RELEASE_S = 2.0
"""How long after a reply is rendered the collector gets everything back."""
HELD_THRESHOLD = 1_000_000_000
"""The oldest generation's threshold while held: never reached, so no full collection
starts by itself."""


_holders: set[GcHold] = set()
"""The holds in force (the collector is one per process: so is what it is held by)."""
_saved: tuple[int, int, int] | None = None
"""The thresholds before the first hold."""


def _watch(phase: str, _info: dict[str, int]) -> None:
    # An app that ended while holding (its timers are gone with it) lets go at the next
    # young collection, so a process that runs on (a test session) is not left held.
    if phase == "stop":
        for hold in [hold for hold in _holders if not hold._app.is_running]:
            hold._release()


class GcHold:
    """Holds full collections off while a reply streams and renders.

    Args:
        app: The app whose timers run the freezing.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._timer: Timer | None = None
        self._streams = 0  # which reply the hold is for

    @property
    def held(self) -> bool:
        """Whether this app holds full collections off now."""
        return self in _holders

    def streaming(self, streaming: bool) -> None:
        """A reply starts (True) or ends (False; its text is all rendered)."""
        global _saved
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if streaming:
            self._streams += 1
            if not _holders:
                _saved = gc.get_threshold()
                gc.set_threshold(_saved[0], _saved[1], HELD_THRESHOLD)
                gc.callbacks.append(_watch)
            _holders.add(self)
            gc.freeze()
            # A lambda: Textual inspects a callback's parameters, which a builtin has not.
            self._timer = self._app.set_interval(GC_FREEZE_S, lambda: gc.freeze())
        else:
            self._timer = self._app.set_timer(GC_RELEASE_S, self._release)

    def ended(self, rendering: asyncio.Task[None] | None) -> None:
        """A reply ended: release once ``rendering`` (the reply widget's task that
        renders what is still queued) is done, unless another reply started by then."""
        if rendering is None or rendering.done():
            self.streaming(False)
            return
        stream = self._streams

        def rendered(_: object) -> None:
            if self._streams == stream:
                self.streaming(False)

        rendering.add_done_callback(rendered)

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = None
        if self not in _holders:
            return
        _holders.discard(self)
        if not _holders and _saved is not None:
            gc.unfreeze()
            gc.set_threshold(*_saved)
            gc.callbacks.remove(_watch)
