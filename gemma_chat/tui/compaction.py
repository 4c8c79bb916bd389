"""Compacting the conversation in the app (``/compact``, and ``context_policy =
"compact"`` before a reply that would otherwise leave turns out).

The summarising call runs in a thread (:func:`asyncio.to_thread`) awaited by an async
worker on the event loop, which then changes the state: the thread touches nothing. Esc
stops it as it stops a reply (nothing changes then). A marker in the conversation says
where turns were compacted; the next message stored carries the summary in its meta.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from gemma_chat.chat.conversation import StopReason, Summary
from gemma_chat.errors import GemmaChatError
from gemma_chat.longinput.compact import compactable, summarise, would_drop


class Compactor:
    """Summarises the oldest turns of the app's conversation.

    Args:
        app: The app (its engine, conversation, chat log, status bar and workers).
        streamer: Whose ``cancel`` event marks a generation as running (Esc sets it).
    """

    def __init__(self, app: Any, streamer: Any) -> None:
        self._app = app
        self._streamer = streamer
        self._meta: dict[str, Any] | None = None

    def take_meta(self, other: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """What to store with the next message: ``other`` (its attached files) and a
        compaction since the last one (once)."""
        meta, self._meta = {**(other or {}), **(self._meta or {})}, None
        return meta or None

    def forget(self, turns_kept: int | None = None) -> None:
        """The turns a summary stands for left the screen: after the first
        ``turns_kept`` (an edit, a regenerate), or all of them (None: another branch or
        conversation): the summary, and the note waiting to be stored with the next
        message, go with them."""
        conversation = self._app.conversation
        summary = conversation.summary
        if turns_kept is None or (summary is not None and summary.turns > turns_kept):
            self._meta = None
            if turns_kept is not None:
                conversation.summary = None

    def dropped(self, turns: int) -> None:
        """Turns were left out of the last prompt (``context_policy = "drop"``): say so,
        and mark the place in the conversation."""
        app = self._app
        app.notify(f"{turns} old turns were left out to fit the context.")
        marker = f"— {turns} earlier turns were left out to fit the context —"
        app.call_next(app.chat.add_notice, marker)

    def needed(self) -> bool:
        """Whether ``context_policy = "compact"`` should compact before the next reply."""
        app = self._app
        if app.settings.context_policy != "compact" or app.engine is None:
            return False
        return compactable(app.conversation) > 0 and would_drop(app.engine, app.conversation)

    def run(self, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Compact now (``then``: what to run after, whatever happened)."""
        app = self._app
        if self._streamer.generating:
            app.notify("A reply is being generated: compact once it is done.", severity="warning")
            return
        turns = compactable(app.conversation)
        if app.engine is None or turns == 0:
            app.notify("Nothing to compact yet: it takes an exchange before the last one.")
            return
        cancel = threading.Event()
        self._streamer.cancel = cancel  # a generation is running: sends wait, Esc stops
        app.status.set_speed("compacting…")
        app.run_worker(
            self._work(app.engine, turns, cancel, then),
            name="compact",
            group="compact",
            exclusive=True,
            exit_on_error=False,
        )

    async def _work(
        self,
        engine: Any,
        turns: int,
        cancel: threading.Event,
        then: Callable[[], Awaitable[None]] | None,
    ) -> None:
        app = self._app
        conversation = app.conversation
        try:
            done, covered = await asyncio.to_thread(summarise, engine, conversation, turns, cancel)
        except GemmaChatError as exc:
            done, covered = None, 0
            app.notify(f"Could not compact: {exc}", severity="error")
        finally:
            self._streamer.cancel = None
            app.status.set_speed("")
        if done is not None and done.stop_reason is StopReason.CANCELLED:
            app.notify("Compacting stopped; nothing changed.")
        elif done is not None and app.conversation is conversation:
            conversation.summary = Summary(covered, done.text)
            self._meta = {"compacted": {"turns": covered, "summary": done.text}}
            await app.chat.add_notice(
                f"— {covered} earlier turns compacted into a summary "
                "(the originals stay in the history) —"
            )
            app.schedule_count()
        if then is not None:
            await then()
