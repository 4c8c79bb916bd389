"""Sending while the model loads (:class:`SendQueue`, a collaborator the app owns): the
message is queued and shown as queued, sent as soon as the model is ready, and Esc
cancels it (its text goes back into the input). If the load fails, it goes back into the
input too: nothing typed is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gemma_chat.tui.widgets.queued import QueuedMessage

if TYPE_CHECKING:
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.tui.widgets.chat_log import ChatLog
    from gemma_chat.tui.widgets.prompt_input import PromptInput


class Sender(Protocol):
    """Sends a message for real (:class:`ReplyStreamer`)."""

    async def send(self, text: str) -> None: ...


class QueueHost(Protocol):
    """What :class:`SendQueue` uses of the app."""

    engine: Engine | None
    conversation: Conversation

    @property
    def replies(self) -> Sender: ...
    @property
    def chat(self) -> ChatLog: ...
    @property
    def prompt(self) -> PromptInput: ...
    @property
    def _loading(self) -> Settings | None: ...
    @property
    def generating(self) -> bool: ...
    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None: ...


class SendQueue:
    """At most one message waiting for the model."""

    def __init__(self, app: QueueHost) -> None:
        self._app = app
        self._waiting: QueuedMessage | None = None

    @property
    def text(self) -> str | None:
        """The queued message (None when none is)."""
        waiting = self._waiting
        return waiting.text if waiting is not None and waiting.is_attached else None

    async def hold(self, text: str) -> bool:
        """Queue ``text`` if the model is still loading.

        Returns:
            Whether the message was taken (queued, or refused because one already
            waits); False when the model is ready, or no load is under way (sending then
            says why it cannot).
        """
        app = self._app
        if app._loading is None or not text.strip() or app.generating:
            return False
        if self.text is not None:
            app.notify(
                "A message is already queued; Esc cancels it. Yours stays in the input.",
                severity="warning",
            )
            return True
        app.prompt.remember(text)
        app.prompt.clear()
        self._waiting = QueuedMessage(text)
        await app.chat.mount(self._waiting)
        app.chat.scroll_end(animate=False)
        return True

    def cancel(self) -> bool:
        """Esc: drop the queued message; its text goes back into the input.

        Returns:
            Whether a message was queued.
        """
        text = self._take()
        if text is None:
            return False
        self._give_back(text)
        self._app.notify("The queued message was not sent.", timeout=3)
        return True

    async def flush(self) -> None:
        """The model is ready: send the queued message, keeping any new draft."""
        app = self._app
        if app.engine is None or app._loading is not None:
            return  # a newer load is still under way: the message keeps waiting
        text = self._take()
        if text is None:
            return
        draft = app.prompt.text
        turns = len(app.conversation.turns)
        await app.replies.send(text)
        if len(app.conversation.turns) > turns:  # sent: the input had the draft
            if draft:
                app.prompt.set_text(draft)
        else:
            self._give_back(text)  # refused (it says why): nothing typed is lost

    def load_failed(self) -> None:
        """No model to send to: the queued message goes back into the input."""
        text = self._take()
        if text is not None:
            self._give_back(text)

    def _take(self) -> str | None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or not waiting.is_attached:
            return None
        waiting.remove()
        return waiting.text

    def _give_back(self, text: str) -> None:
        prompt = self._app.prompt
        if prompt.text.strip():
            prompt.set_text(f"{text}\n{prompt.text}")
        else:
            prompt.set_text(text)
