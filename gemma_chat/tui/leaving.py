"""When the conversation on screen may give way: to another conversation (new, open,
delete) or to another of its branches. What is under way belongs to it and would be
lost: a reply or a compaction, a message queued while the model loads, an open edit
(leaving cancels it, giving the draft back; a switch waits for it), or, for a switch,
the turns not saved.
"""

from __future__ import annotations

from typing import Any

from gemma_chat.tui.slash import BUSY_HINT


def why_not_leave(app: Any) -> str | None:
    """Why the conversation on screen cannot be left now (None: it can)."""
    if app.generating:  # a reply or a compaction
        return BUSY_HINT
    if app.queue.text is not None:
        return "A message waits for the model: it is sent once it loads (Esc takes it back)."
    return None


def why_not_switch(app: Any) -> str | None:
    """Why the conversation on screen cannot give way to another of its branches now
    (None: it can)."""
    reason = why_not_leave(app)
    if reason is not None:
        return reason
    if app.replies.editing is not None:
        return "An edit is open: send it (Enter) or cancel it (Esc), then switch."
    if not app.history.session.saving:
        return (
            "This conversation is not being saved, so another version cannot be shown "
            "without losing what is on screen."
        )
    return None


def refused(app: Any, reason: str | None) -> bool:
    """Say ``reason`` when there is one; whether there was."""
    if reason is not None:
        app.notify(reason, severity="warning", timeout=6)
    return reason is not None
