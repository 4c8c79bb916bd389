"""Files attached to the next message in the app (a collaborator the app owns).

``/read PATH`` and ``@path`` words in the input attach a file; the chips above the input
show each one with its tokens, counted by the model's tokenizer in a thread worker that
only posts :class:`AttachmentCounted` to the chips; a pressed chip takes its file off.
The message sent is the files' blocks, then the typed text (the layout of ``ask -f``),
and the history keeps each file's name, size and tokens with it.
"""

from __future__ import annotations

import functools
from typing import Any

from textual.app import App

from gemma_chat.chat.attachments import Attachment, compose_message, read_attachment
from gemma_chat.chat.path_complete import at_paths
from gemma_chat.errors import UsageError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.text_counts import estimate_tokens
from gemma_chat.tui.widgets.attachment_chips import AttachmentChips, AttachmentCounted, Chip


class AttachmentTray:
    """The files attached to the message being written.

    Args:
        app: The app: its engine, its workers, its notifications and the chips widget
            (looked up when needed: it exists once mounted).
    """

    def __init__(self, app: App[Any]) -> None:
        self._app = app
        self.files: list[Attachment] = []
        self.tokens: dict[str, int] = {}
        self._dismissed: set[str] = set()  # @paths taken off: not attached again

    def add(self, path: str, *, quiet: bool = False) -> bool:
        """Attach a file (``/read PATH``); a file that cannot be attached is one
        notification (as ``ask -f`` would say), unless ``quiet``."""
        path = path.strip()
        if not path:
            self._app.notify("usage: /read PATH (Tab completes the path)", severity="error")
            return False
        try:
            attachment = read_attachment(path)
        except UsageError as exc:
            if not quiet:
                self._app.notify(str(exc), severity="error")
            return False
        self.files = [a for a in self.files if a.name != attachment.name] + [attachment]
        self._dismissed.discard(attachment.name)
        self._render()
        self.count()
        return True

    def remove(self, name: str) -> None:
        """Take a file off (its chip was pressed)."""
        self.files = [a for a in self.files if a.name != name]
        self._dismissed.add(name)
        self._render()
        self._app.schedule_count()  # type: ignore[attr-defined]

    def clear(self) -> None:
        """Nothing attached any more (the message was sent)."""
        self.files, self._dismissed = [], set()
        self._render()

    def sync(self, text: str) -> None:
        """Attach the files that ``@path`` words in the input name (once each)."""
        for name in at_paths(text):
            known = any(a.name == name for a in self.files)
            if not known and name not in self._dismissed:
                self.add(name, quiet=True)

    def draft(self, text: str) -> str:
        """The message as it would be sent now (for the context meter), after attaching
        the ``@path`` files the text names and counting the files not counted yet."""
        self.sync(text)
        self.count()
        return self.message(text)

    def message(self, text: str) -> str:
        """The message to send: the files' blocks, then the typed text."""
        return compose_message(self.files, None, text)

    def meta(self) -> dict[str, Any] | None:
        """What the history keeps with the message: each file's name, size and tokens."""
        if not self.files:
            return None
        files = [
            {"name": a.name, "size": a.size, "tokens": self.tokens.get(a.name)} for a in self.files
        ]
        return {"attachments": files}

    def take_meta(self) -> dict[str, Any] | None:
        """:meth:`meta`, then nothing is attached any more (the message was sent)."""
        meta = self.meta()
        self.clear()
        return meta

    def count(self) -> None:
        """Count the tokens of the files not counted yet, in a thread worker."""
        engine: Engine | None = getattr(self._app, "engine", None)
        if engine is None:
            return
        todo = [a for a in self.files if a.name not in self.tokens]
        if todo:
            self._app.run_worker(
                functools.partial(self._count, engine, todo, self._chips()),
                name="count_attachments",
                group="attachments",
                thread=True,
                exit_on_error=False,
            )

    def _count(self, engine: Engine, files: list[Attachment], chips: AttachmentChips) -> None:
        """Worker: count each file's block; post the counts (never touch a widget)."""
        template = engine.template
        for attachment in files:
            block = attachment.block()
            tokens = (
                estimate_tokens(block)
                if template is None
                else len(template.tokenizer.tokenize(block))
            )
            chips.post_message(AttachmentCounted(attachment.name, tokens))

    def counted(self, message: AttachmentCounted) -> None:
        """A count arrived: show it, and recount the context meter."""
        if any(a.name == message.name for a in self.files):
            self.tokens[message.name] = message.tokens
            self._render()
            self._app.schedule_count()  # type: ignore[attr-defined]

    def _chips(self) -> AttachmentChips:
        return self._app.query_one(AttachmentChips)

    def _render(self) -> None:
        widget = self._chips()
        widget.on_remove, widget.on_counted = self.remove, self.counted
        widget.show([Chip(a.name, a.size, self.tokens.get(a.name)) for a in self.files])
