"""The links between the messages of an export: checked on import, and turned into the
tree the store keeps.

Version 3 documents name each message's ``parent`` and the conversation's ``active``
message as positions in the message list. Versions 1 and 2 were linear (``replaced_by``
marks what an edit or a regenerate took the place of); they become branches exactly as
the schema 5 migration turns a stored history into them
(:func:`gemma_chat.history.linear.linear_links`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemma_chat.history.linear import LinearMessage, linear_links


def check_linear(messages: Sequence[Any], active: int | None) -> None:
    """A version 1 or 2 document's links: ``replaced_by`` names a later message, and
    there is no ``parent`` or ``active`` (they came with version 3).

    Raises:
        ValueError: The first link that is not so.
    """
    if active is not None:
        raise ValueError("conversation.active: only version 3 documents have it")
    for position, message in enumerate(messages):
        if message.parent is not None:
            raise ValueError(f"messages.{position}.parent: only version 3 documents have it")
        by = message.replaced_by
        # A link back or to itself would hide messages for good (a cycle is never shown).
        if by is not None and not position < by < len(messages):
            raise ValueError(
                f"messages.{position}.replaced_by: {by} is not the position of a later message"
            )


def check_tree(messages: Sequence[Any], active: int | None) -> None:
    """A version 3 document's links: each ``parent`` is the position of another message,
    following them never comes back to where it started, and ``active`` is a position.

    Raises:
        ValueError: The first link that is not so.
    """
    count = len(messages)
    if active is not None and active >= count:
        raise ValueError(f"conversation.active: {active} is not the position of a message")
    parents: list[int | None] = []
    for position, message in enumerate(messages):
        if message.replaced_by is not None:
            raise ValueError(
                f"messages.{position}.replaced_by: version 3 documents use parent instead"
            )
        if message.parent is not None and not (0 <= message.parent < count):
            raise ValueError(
                f"messages.{position}.parent: {message.parent} is not the position of a message"
            )
        parents.append(message.parent)
    settled: set[int] = set()
    for start in range(count):
        seen: set[int] = set()
        at: int | None = start
        while at is not None and at not in settled:
            if at in seen:
                raise ValueError(f"messages.{start}.parent: the links go round in a circle")
            seen.add(at)
            at = parents[at]
        settled |= seen


def tree_links(document: Any) -> tuple[list[int | None], int | None]:
    """The parent position of each message of a checked document, and the position of
    the end of the branch viewed."""
    messages = document.messages
    if document.version >= 3:
        return [message.parent for message in messages], document.conversation.active
    linear = [
        LinearMessage(position, message.role, message.reply_to, message.replaced_by)
        for position, message in enumerate(messages)
    ]
    parents, active = linear_links(linear)
    return [parents[position] for position in range(len(messages))], active
