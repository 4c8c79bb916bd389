"""How long notifications stay, and notices that a later one supersedes.

Notifications are short (a few seconds by severity; an error a little longer, since it
asks for something), they never cover the input (``ToastRack`` sits at the top right, in
``gemma.tcss``), and a notice given with a ``key`` replaces the previous one with that key
and can be cleared when it no longer holds ("assembling the demo model…" once the model
has loaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.notifications import Notification, Notify, SeverityLevel

from gemma_chat.sanitize import one_line, visible

if TYPE_CHECKING:
    from textual.app import App

TIMEOUTS = {"information": 4.0, "warning": 6.0, "error": 10.0}
"""The longest a notification of each severity stays on screen, in seconds."""


class Notices:
    """The app's notifications with a key (a collaborator the app owns).

    Args:
        app: The app that shows them.
    """

    def __init__(self, app: App[None]) -> None:
        self._app = app
        self._keyed: dict[str, Notification] = {}

    @staticmethod
    def timeout(severity: str, asked: float | None) -> float:
        """The timeout to use: what was asked for, capped by :data:`TIMEOUTS`."""
        longest = TIMEOUTS.get(severity, TIMEOUTS["information"])
        return longest if asked is None else min(asked, longest)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
        key: str | None = None,
    ) -> None:
        """Show a notification. Many quote untrusted text (a server's error, a title, a
        model's name), so every one passes through the sanitizer here, in one place. They
        also quote what the user typed (`/theme [/]`), so they are never parsed as markup.
        Timeouts are short (:data:`TIMEOUTS`); a keyed notice is cleared when it stops
        being true (:meth:`clear`), so it may stay longer."""
        if key is None or not timeout:
            timeout = self.timeout(severity, timeout)
        notification = Notification(
            visible(message), one_line(title), severity, timeout, markup=markup
        )
        self.show(notification, key)

    def show(self, notification: Notification, key: str | None) -> None:
        """Show ``notification``; with a ``key``, in place of the last one with that key."""
        if key is not None:
            self.clear(key)
            self._keyed[key] = notification
        self._app.post_message(Notify(notification))

    def clear(self, key: str) -> None:
        """Take the notice with ``key`` off the screen (superseded, or no longer true)."""
        old = self._keyed.pop(key, None)
        notifications = self._app._notifications  # Textual keeps them here (no public API)
        if old is not None and old in notifications:
            self._app._unnotify(old)
