"""Messages the workers post to the app: past-tense events, handled on the UI thread.

Each is a plain dataclass on a :class:`~textual.message.Message` subclass: the generated
``__init__`` calls Textual's ``Message.__post_init__``, which does the message's setup.
(So none may call ``super().__init__()`` from its own ``__post_init__``: that recurses.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from textual.message import Message

from gemma_chat.config.settings import Settings
from gemma_chat.generation.events import ReplyDone

if TYPE_CHECKING:
    from gemma_chat.backend.base import Backend
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo

Severity = Literal["information", "warning", "error"]


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class ModelLoaded(Message):
    """A model finished loading (``settings``: the load's own; ``info`` is None for a
    scripted model)."""

    info: ModelInfo | RemoteModelInfo | None
    backend: Backend
    settings: Settings | None = None


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class ModelLoadFailed(Message):
    """Loading a model failed; ``reason`` is one line for the user (``settings``: the
    load's own)."""

    reason: str
    settings: Settings | None = None


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class Notice(Message):
    """Something a worker wants the user to see (a loader's warning), as a notification."""

    text: str
    severity: Severity = "information"
    timeout: float | None = None
    key: str | None = None
    """A notice with a key replaces the last one with that key (see ``Notices``)."""


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class ReplyDelta(Message):
    """New reply text, safe to show, made of ``tokens`` tokens."""

    text: str
    tokens: int = 1


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class ReplyFinished(Message):
    """The reply ended; ``done`` carries its text, stop reason and stats (``meta``:
    what the history keeps with it, such as a long input's notes)."""

    done: ReplyDone
    meta: dict | None = None


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class ReplyFailed(Message):
    """The reply could not start or broke off; ``reason`` is one line for the user."""

    reason: str


@dataclass(eq=False)  # identity, as for every Message (and hashable)
class TokensCounted(Message):
    """The context meter's count for the conversation plus the draft in the input."""

    used: int
