"""The welcome panel: shown above an empty conversation, it names the model and says
whether it is a base or an instruction-tuned one (see :mod:`gemma_chat.models.kind`), and
for a base model how to get a real chat model.

The model's name comes from its file or GGUF metadata, or from a server: it is shown as
plain text (never markup) through :func:`gemma_chat.sanitize.one_line`."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from gemma_chat.models.kind import PULL_HINT, PULLED_NAME
from gemma_chat.sanitize import one_line

KEYS_LINE = "Enter sends · Ctrl+J new line · Esc stops a reply · F1 help · Ctrl+Q quits"
"""The keys that matter, under the model's line."""


def welcome_text(name: str, info: Any) -> Text:
    """What the panel says for the model named ``name`` (``info``: its
    :class:`~gemma_chat.models.resolve.ModelInfo` or remote info, None when unknown)."""
    kind = getattr(info, "kind", None)
    label = getattr(info, "name", None) or name
    title = one_line(label if label == name else f"{label} ({name})")
    text = Text()
    text.append("Welcome to gemma-chat. ", style="bold")
    if kind is None or kind.kind == "unknown":
        text.append(f"The model is {title}.\n")
        text.append(KEYS_LINE, style="dim")
        return text
    if kind.kind == "instruct":
        text.append(f"{title} is an instruction-tuned model, ready to chat.\n")
        text.append(f"(Decided from its metadata: {kind.reason}.) ", style="dim")
        text.append(KEYS_LINE, style="dim")
        return text
    text.append(f"{title} is a base model: ", style="bold")
    text.append(
        "it continues text rather than answering it, so its replies will be poor. "
        f"(Decided from its metadata: {kind.reason}.)\n"
    )
    text.append("For real chats, use an instruction-tuned model:\n")
    for how, does in (
        (PULL_HINT, f"in a shell, then /model {PULLED_NAME}"),
        ("/model", "pick another model found on this machine"),
        ("gemma-chat --model PATH", "start with any GGUF file"),
    ):
        text.append(f"  {how}", style="bold")
        text.append(f"  {does}\n")
    text.append(KEYS_LINE, style="dim")
    return text


class WelcomePanel(Static):
    """Above an empty conversation; the app shows it (:meth:`show_for`) or hides it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.kind: str | None = None
        """The kind shown (``base``, ``instruct``, ``unknown``; None when hidden)."""
        self._shown: tuple[str, str] | None = None

    def show_for(self, name: str | None, info: Any, empty: bool) -> None:
        """Show the panel for the loaded model ``name`` while the conversation is
        ``empty``; hide it otherwise (or while no model is loaded)."""
        shown = name is not None and empty
        if shown:
            assert name is not None
            kind = getattr(info, "kind", None)
            new_kind = kind.kind if kind is not None else "unknown"
            if (name, new_kind) != self._shown:
                self.update(welcome_text(name, info))
            self.kind, self._shown = new_kind, (name, new_kind)
            self.set_class(new_kind == "base", "-base")
        else:
            self.kind = None
        self.display = shown
