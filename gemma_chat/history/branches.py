"""The versions of each turn on screen: which other edits of a question, or other
replies to it, the conversation tree holds, and which one comes next.

A turn's versions are the messages with the same parent as one of its messages (the
first that has any: a turn can hold several questions answered together), see
:meth:`gemma_chat.history.store.HistoryStore.siblings`. Pure data: the app shows "2/3"
from it and switches with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Versions:
    """The versions of one message, oldest first.

    Attributes:
        ids: The stored ids of every version (itself included).
        current: The index in ``ids`` of the one on screen.
    """

    ids: tuple[int, ...]
    current: int

    @property
    def label(self) -> str:
        """``2/3``: the one on screen, of how many."""
        return f"{self.current + 1}/{len(self.ids)}"

    def step_label(self, by: int) -> str:
        """The label of the version ``by`` versions on: ``3/3``."""
        return f"{(self.current + by) % len(self.ids) + 1}/{len(self.ids)}"

    def step(self, by: int) -> int:
        """The id ``by`` versions on (negative: back), going round at either end."""
        return self.ids[(self.current + by) % len(self.ids)]


Link = tuple[int, "int | None", str]
"""A message's ``(id, parent_id, role)``: the shape of the tree."""


def turn_versions(links: Iterable[Link], turns: Sequence[Sequence[int]]) -> list[Versions | None]:
    """For each turn (its stored message ids, as a session keeps them), its versions;
    None for a turn with no other version (or not stored)."""
    family: dict[int | None, list[int]] = {}
    parent: dict[int, int | None] = {}
    for message_id, parent_id, _role in links:
        family.setdefault(parent_id, []).append(message_id)
        parent[message_id] = parent_id
    found: list[Versions | None] = []
    for ids in turns:
        versions = None
        for message_id in ids:
            siblings = family.get(parent[message_id], []) if message_id in parent else []
            if len(siblings) > 1:
                versions = Versions(tuple(siblings), siblings.index(message_id))
                break
        found.append(versions)
    return found
