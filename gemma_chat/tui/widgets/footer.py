"""The footer: Textual's, with F1 Help always first, so that it stays in view in a narrow
window and while the sidebar (or a dialog) lists its own keys in front of the app's."""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

HELP_ACTION = "help"
"""The action whose key comes first."""


class HelpFirstFooter(Footer):
    """A compact footer that puts the Help key first."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(compact=True, **kwargs)  # type: ignore[arg-type]

    def compose(self):
        widgets = list(super().compose())
        first = [w for w in widgets if isinstance(w, FooterKey) and w.action == HELP_ACTION]
        yield from first + [w for w in widgets if w not in first]
