"""The context meter (a collaborator the app owns): how much of the context window the
conversation plus the draft in the input takes, counted by the model's tokenizer in a
thread worker that only posts :class:`TokensCounted`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from textual.app import App
from textual.timer import Timer

from gemma_chat.chat.conversation import Conversation
from gemma_chat.generation.engine import Engine
from gemma_chat.tui.messages import TokensCounted
from gemma_chat.tui.widgets.status_bar import StatusBar

DELAY_S = 0.15
"""Typing restarts the count's delay: it runs once the user pauses."""
STREAM_UPDATE_S = 0.25
"""How often the meter moves while a reply streams."""


class ContextMeter:
    """Schedules counts and shows them in the status bar.

    Args:
        app: The app the worker runs in and posts to.
        status: The status bar (looked up when needed: it exists once mounted).
    """

    def __init__(self, app: App[None], status: Callable[[], StatusBar]) -> None:
        self._app = app
        self._status = status
        self._timer: Timer | None = None
        self._counted: int | None = None
        """The last count (the conversation and the draft, without a streaming reply)."""
        self._streamed = 0
        """Tokens of the reply streaming now, added to the last count."""
        self._shown_at = 0.0

    def schedule(self, count: Callable[[], None]) -> None:
        """Run ``count`` shortly (typing restarts the delay)."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self._app.set_timer(DELAY_S, count)

    def count(self, engine: Engine, conversation: Conversation, draft: str) -> None:
        """Count the conversation plus ``draft`` in the background; a conversation that
        cannot fit is shown at once as an estimate, without tokenizing it."""
        from gemma_chat.models.loader import MAX_BYTES_PER_TOKEN

        size = len(draft) + sum(len(turn.text) for turn in conversation.turns)
        if size > engine.n_ctx * MAX_BYTES_PER_TOKEN:
            # It cannot fit, whatever the tokenizer says; tokenizing megabytes would hold
            # a worker (and quitting, which waits for it) for minutes. A lower bound.
            self._status().set_meter(size // MAX_BYTES_PER_TOKEN, engine.n_ctx, estimated=True)
            return
        self._app.run_worker(
            functools.partial(self._count, engine, conversation, draft),
            name="count_tokens",
            group="meter",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def _count(self, engine: Engine, conversation: Conversation, draft: str) -> None:
        """Worker: count with the model's tokenizer, then post the result."""
        self._app.post_message(TokensCounted(engine.count_tokens(conversation, draft)))

    def show(self, used: int, n_ctx: int, *, estimated: bool) -> None:
        """Show a count (while a reply streams, its tokens so far are added: they are
        not in the conversation yet)."""
        self._counted = used
        self._status().set_meter(used + self._streamed, n_ctx, estimated=estimated)

    def reply_ended(self) -> None:
        """The reply is in the conversation now (or gone): the next count has it."""
        if self._counted is not None:
            self._counted += self._streamed
        self._streamed = 0

    def streamed(self, tokens: int, n_ctx: int, *, estimated: bool) -> None:
        """``tokens`` more of the reply arrived: the meter moves while it streams (a few
        times a second, as the speed does: each update lays out the status bar)."""
        self._streamed += tokens
        now = time.monotonic()
        if self._counted is not None and now - self._shown_at >= STREAM_UPDATE_S:
            self._shown_at = now
            used = self._counted + self._streamed
            self._status().set_meter(used, n_ctx, estimated=estimated)
