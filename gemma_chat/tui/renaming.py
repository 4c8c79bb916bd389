"""Renaming a stored conversation from the app: at once, or through a dialog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gemma_chat.errors import GemmaChatError


def rename_conversation(
    app: Any,
    conversation_id: int | None,
    title: str = "",
    current: str = "",
    renamed: Callable[[], None] | None = None,
) -> None:
    """Rename a stored conversation: to ``title`` at once, or ask (starting from
    ``current``) when no title is given; ``renamed`` runs after a rename."""
    if conversation_id is None or app.history.store is None:
        app.notify("Nothing to rename yet: a conversation is stored once you send a message.")
        return
    store = app.history.store

    def rename(new: str | None) -> None:
        if not new:
            return
        try:
            store.rename(conversation_id, new)
        except GemmaChatError as exc:
            app.notify(str(exc), severity="error", markup=False)
            return
        app.notify(f"Renamed to “{' '.join(new.split())}”.", markup=False)
        if renamed is not None:
            renamed()

    if title:
        rename(title)
        return
    from gemma_chat.tui.screens.dialogs import RenameScreen

    if not current:
        try:
            current = store.get(conversation_id).title
        except GemmaChatError:
            current = ""
    app.push_screen(RenameScreen(current), rename)
