"""The shape of a conversation tree for reading: the rows of ``history show --tree`` and
the branches of a Markdown export with ``--all-branches``.

A long conversation is mostly one line of messages, each following the one before, with a
few forks where a question was edited or a reply regenerated. Indenting every fork would
push a conversation with thirty regenerated replies thirty levels to the right, so the
layout keeps one *main line* flat: at each fork, the child on the branch viewed (else the
newest, where switching to the fork would go) continues at the same depth, and the other
children, each a *side branch* with everything after it, are shown one level deeper just
before it. Depth only grows where a side branch forks again.

Plain data in, plain data out: no store, no terminal. Walks are iterative, so a
conversation of any length lays out without recursion.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gemma_chat.history.records import MessageRecord


@dataclass(frozen=True)
class TreeRow:
    """One message in the tree's reading order.

    Attributes:
        message: The message.
        depth: How many side branches deep it is (0: the main line).
        starts_branch: Whether it is the first message of a side branch (it does not
            follow the row above: it forks from the last shallower row).
        active: Whether it is on the branch viewed.
        version: Its number among its versions (the messages with its parent and role),
            oldest first, from 1.
        versions: How many versions there are (1: none but itself).
        leaf: Whether nothing follows it (it ends a branch).
    """

    message: MessageRecord
    depth: int
    starts_branch: bool
    active: bool
    version: int
    versions: int
    leaf: bool


@dataclass(frozen=True)
class Branch:
    """One branch for a transcript: a path from the start.

    Attributes:
        messages: Its messages, from the first.
        new_from: How many of them earlier branches showed already (it leaves them
            after ``messages[new_from - 1]``; 0: it shares nothing with them).
        active: Whether it is the branch viewed.
    """

    messages: list[MessageRecord]
    new_from: int
    active: bool

    @property
    def new(self) -> list[MessageRecord]:
        """The part no earlier branch showed."""
        return self.messages[self.new_from :]


def _children(messages: Sequence[MessageRecord]) -> dict[int | None, list[MessageRecord]]:
    """Each message's children (``None``: the roots), in the order written. A parent that
    is not among ``messages`` makes a root, so a partial list still lays out."""
    known = {message.id for message in messages}
    children: dict[int | None, list[MessageRecord]] = {}
    for message in sorted(messages, key=lambda m: m.seq):
        parent = message.parent_id if message.parent_id in known else None
        children.setdefault(parent, []).append(message)
    return children


def _versions(children: dict[int | None, list[MessageRecord]]) -> dict[int, tuple[int, int]]:
    """Each message's ``(version, versions)`` among the children of its parent with its
    role (the store's :meth:`~gemma_chat.history.store.HistoryStore.siblings`)."""
    found: dict[int, tuple[int, int]] = {}
    for kids in children.values():
        for role in {kid.role for kid in kids}:
            same = [kid for kid in kids if kid.role == role]
            for number, kid in enumerate(same, 1):
                found[kid.id] = (number, len(same))
    return found


def tree_rows(messages: Sequence[MessageRecord], active_ids: Collection[int]) -> list[TreeRow]:
    """Every message, in reading order (see the module docstring).

    Args:
        messages: Every message of a conversation, each naming its parent.
        active_ids: The ids on the branch viewed.
    """
    active = set(active_ids)
    children = _children(messages)
    versions = _versions(children)
    rows: list[TreeRow] = []
    # Work items: (message, depth, starts_branch); each is shown, then its line goes on.
    stack: list[tuple[MessageRecord, int, bool]] = []

    def fork(kids: list[MessageRecord], depth: int, starts: bool) -> None:
        main = next((kid for kid in kids if kid.id in active), kids[-1])
        stack.append((main, depth, starts))  # shown last: after the side branches
        stack.extend((kid, depth + 1, True) for kid in reversed(kids) if kid is not main)

    if None in children:
        fork(children[None], 0, False)
    while stack:
        message, depth, starts = stack.pop()
        kids = children.get(message.id, [])
        version, count = versions[message.id]
        rows.append(TreeRow(message, depth, starts, message.id in active, version, count, not kids))
        if kids:
            fork(kids, depth, False)
    return rows


def branches(messages: Sequence[MessageRecord], active_ids: Sequence[int]) -> list[Branch]:
    """Every branch: the one viewed first (``active_ids``, which may end before a leaf),
    then one per other leaf in the tree's reading order, each knowing where it leaves
    the branches before it."""
    by_id = {message.id: message for message in messages}
    paths = [[by_id[i] for i in active_ids if i in by_id]] if active_ids else []
    end = active_ids[-1] if active_ids else None
    for row in tree_rows(messages, active_ids):
        if row.leaf and row.message.id != end:
            paths.append(_path_to(row.message, by_id))
    shown: set[int] = set()
    found: list[Branch] = []
    for index, path in enumerate(paths):
        new_from = next((n for n, m in enumerate(path) if m.id not in shown), len(path))
        found.append(Branch(path, new_from, active=index == 0 and bool(active_ids)))
        shown.update(message.id for message in path)
    return found


def _path_to(leaf: MessageRecord, by_id: dict[int, MessageRecord]) -> list[MessageRecord]:
    path = [leaf]
    seen = {leaf.id}
    while (parent := by_id.get(path[-1].parent_id)) is not None and parent.id not in seen:
        path.append(parent)
        seen.add(parent.id)
    path.reverse()
    return path
