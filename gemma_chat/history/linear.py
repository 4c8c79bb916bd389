"""From the linear history of schema 4 (and export formats 1 and 2) to a tree.

Before the conversation tree, a conversation was a list of messages in the order they
were written: the path shown was every message not ``replaced_by`` another, paired into
turns by ``reply_to``, and an edit or a regenerate marked the messages it took the place
of. :func:`linear_links` turns that into parent links, so that nothing shown before is
lost or moved:

* the path shown becomes one branch, in the order its turns were shown (the pairing of
  :mod:`gemma_chat.history.turns`, so interleaved writers read as they did);
* the messages an edit or a regenerate replaced become a sibling branch of their
  replacement: the first of them has the replacement's parent, the others follow it in
  the order they were written;
* a reply the pairing left out (its question gone, or answered already) hangs under its
  question when that exists, else under the message written before it.

No link makes a cycle, whatever the rows say: a message that would be its own ancestor
becomes a root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gemma_chat.history.turns import stored_turns


@dataclass(frozen=True)
class LinearMessage:
    """What the links are computed from: one message of a linear conversation.

    Attributes:
        id: Its key: a row id, or a position in an export.
        role: ``user`` or ``model``.
        reply_to: For a reply, the key of its question.
        replaced_by: The key of the message that replaced it (None: on the path shown).
    """

    id: int
    role: str
    reply_to: int | None = None
    replaced_by: int | None = None


def linear_links(
    messages: Sequence[LinearMessage],
) -> tuple[dict[int, int | None], int | None]:
    """Parent links for a linear conversation, in the order the messages were written.

    Returns:
        ``(parent of each key, the key of the last message on the path shown)``; the
        last is None when nothing is shown.
    """
    order = {message.id: index for index, message in enumerate(messages)}
    parents: dict[int, int | None] = {}
    shown = [m for m in messages if m.replaced_by is None or m.replaced_by not in order]
    previous: int | None = None
    for turn in stored_turns(shown):
        for key in turn.ids:
            parents[key] = previous
            previous = key
    active = previous
    # Replaced groups, the latest replacement first: its own parent is known by then.
    groups: dict[int, list[LinearMessage]] = {}
    for message in messages:
        if message.id not in parents and message.replaced_by in order:
            groups.setdefault(message.replaced_by, []).append(message)
    for by in sorted(groups, key=order.__getitem__, reverse=True):
        previous = parents.get(by)
        for message in groups[by]:
            parents[message.id] = previous
            previous = message.id
    # Whatever is left: replies the pairing left out, replacements of missing ones.
    for index, message in enumerate(messages):
        if message.id not in parents:
            guess = message.reply_to if message.reply_to in order else None
            if guess is None and index > 0:
                guess = messages[index - 1].id
            parents[message.id] = guess
    return _without_cycles(parents), active


def _without_cycles(parents: dict[int, int | None]) -> dict[int, int | None]:
    """``parents`` where a message that is its own ancestor becomes a root."""
    settled: set[int] = set()
    for start in parents:
        seen: list[int] = []
        key: int | None = start
        while key is not None and key not in settled:
            if key in seen:
                parents[key] = None  # the cycle is cut here
                break
            seen.append(key)
            key = parents.get(key)
        settled.update(seen)
    return parents
