"""Messages the workers post to the app: past-tense events, handled on the UI thread."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from gemma_chat.generation.events import ReplyDone


class ModelLoaded(Message):
    """A model finished loading (with ``settings``, the load's own)."""

    def __init__(self, info: Any, backend: Any, settings: Any = None) -> None:
        self.info = info
        self.backend = backend
        self.settings = settings
        super().__init__()


class ModelLoadFailed(Message):
    """Loading a model failed; ``reason`` is one line for the user (``settings``: the
    load's own)."""

    def __init__(self, reason: str, settings: Any = None) -> None:
        self.reason = reason
        self.settings = settings
        super().__init__()


class ReplyDelta(Message):
    """New reply text, safe to show, made of ``tokens`` tokens."""

    def __init__(self, text: str, tokens: int = 1) -> None:
        self.text = text
        self.tokens = tokens
        super().__init__()


class ReplyFinished(Message):
    """The reply ended; ``done`` carries its text, stop reason and stats."""

    def __init__(self, done: ReplyDone) -> None:
        self.done = done
        super().__init__()


class ReplyFailed(Message):
    """The reply could not start or broke off; ``reason`` is one line for the user."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__()


class TokensCounted(Message):
    """The context meter's count for the conversation plus the draft in the input."""

    def __init__(self, used: int) -> None:
        self.used = used
        super().__init__()
