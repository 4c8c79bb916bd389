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
    """One branch for a transcript, as far as no earlier branch showed it.

    Attributes:
        new: Its messages no earlier branch showed, in order.
        fork: The message it leaves the earlier branches after (None: it shares nothing
            with them, e.g. an edit of the first question).
        active: Whether it is the branch viewed (then ``new`` is all of it).
    """

    new: list[MessageRecord]
    fork: MessageRecord | None
    active: bool


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
    """Each message's ``(version, versions)`` among the children of its parent, as the
    app numbers them (the store's :meth:`~gemma_chat.history.store.HistoryStore.siblings`)."""
    found: dict[int, tuple[int, int]] = {}
    for kids in children.values():
        for number, kid in enumerate(kids, 1):
            found[kid.id] = (number, len(kids))
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
    then one per other leaf in the tree's reading order, each only from where it leaves
    the branches before it. Each message is walked once: linear in the tree's size."""
    by_id = {message.id: message for message in messages}
    found: list[Branch] = []
    shown: set[int] = set()
    viewed = [by_id[i] for i in active_ids if i in by_id]
    if viewed:
        found.append(Branch(viewed, None, active=True))
        shown.update(message.id for message in viewed)
    end = active_ids[-1] if active_ids else None
    for row in tree_rows(messages, active_ids):
        if not row.leaf or row.message.id == end:
            continue
        new = [row.message]  # up from the leaf until a message shown already
        walked = {row.message.id}
        while (parent := by_id.get(new[-1].parent_id)) is not None and parent.id not in shown:
            if parent.id in walked:  # a cycle, which no write makes: stop there
                break
            new.append(parent)
            walked.add(parent.id)
        new.reverse()
        found.append(Branch(new, by_id.get(new[0].parent_id), active=False))
        shown.update(message.id for message in new)
    return found


def branch_count(messages: Sequence[MessageRecord], active_ids: Sequence[int]) -> int:
    """How many branches :func:`branches` finds, without building them: one per message
    nothing follows, and the branch viewed when it ends before a leaf."""
    parents = {message.parent_id for message in messages}
    leaves = sum(1 for message in messages if message.id not in parents)
    mid_tree = bool(active_ids) and active_ids[-1] in parents
    return leaves + int(mid_tree)
