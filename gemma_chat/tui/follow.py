"""What follows every change of the conversation, the draft or the model: the context
meter, the footer's Esc entry, the welcome panel and the completion hint."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from gemma_chat.tui.messages import TokensCounted
from gemma_chat.tui.widgets.welcome import WelcomePanel


class ChangeFollower:
    """Keeps the meter, the footer and the welcome panel in step with the app.

    Args:
        app: The app (its engine, conversation, draft, replies and widgets).
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._stop_shown = False

    def changed(self) -> None:
        """Recount the context meter shortly (typing restarts the delay), show Esc in
        the footer only when it stops something, and the panel while nothing is said."""
        app = self._app
        if app._gone():  # a change that arrives as the app shuts down (no screen left)
            return
        app.meter.schedule(self._count_now)
        if self._stop_shown != self.can_stop():
            self._stop_shown = not self._stop_shown
            app.refresh_bindings()
        empty = not app.conversation.turns and app.replies.reply is None
        name = app.backend.info.model if app.backend is not None else None
        app.query_one(WelcomePanel).show_for(name, app.model_info, empty)

    def counted(self, message: TokensCounted) -> None:
        """A count from the meter's worker arrived."""
        app = self._app
        if app.engine is not None and not app._gone():
            app.meter.show(message.used, app.engine.n_ctx, estimated=app.remote)

    def _count_now(self) -> None:
        app = self._app
        if app.engine is not None and not app._gone():
            draft = app.attachments.draft(app.prompt.text)  # attached files count too
            app.meter.count(app.engine, app.conversation, draft)

    def stop_shown(self) -> bool:
        """Whether the footer shows Esc now (asked by the footer as it renders): kept, so
        that a change finds the footer out of date whenever it is, whoever refreshed it."""
        self._stop_shown = self.can_stop()
        return self._stop_shown

    def can_stop(self) -> bool:
        """Whether Esc has something to stop: a reply, an edit, a queued message."""
        app = self._app
        return app.generating or app.replies.editing is not None or app.queue.text is not None

    def streamed(self, tokens: int) -> None:
        """The meter moves while a reply streams."""
        app = self._app
        if app.engine is not None and not app._gone():
            app.meter.streamed(tokens, app.engine.n_ctx, estimated=app.remote)

    def completions(self, matches: list[str]) -> None:
        """The Tab hint under the conversation (typed text: never markup)."""
        hint = "Tab: " + "  ".join(matches) if matches else ""
        self._app.query_one("#completions", Static).update(Text(hint))
        self._app.query_one("#completions").set_class(bool(hint), "-visible")
