"""``gemma-chat history show ID --tree``: every message of a conversation, one line each.

A line is the message's id (what ``ask --from`` takes), who wrote it, and its first
words, sanitized: history text is untrusted. ``*`` marks the branch viewed, ``2/3`` a
message with other versions (an edited question, a regenerated reply). The layout is
:func:`gemma_chat.history.tree_layout.tree_rows`: the main line stays flat however long
it is, and a side branch hangs off it with ``├─``, one level in, just before the version
the main line goes on with::

    Conversation 12: Why is the sky blue? · 2 branches · * the branch viewed
    * 1  you    Why is the sky blue?
      2  gemma  ├─ 1/2 Because of Rayleigh scattering.
      4  you    │  Say it shorter.
    * 3  gemma  2/2 Blue light scatters the most in air.

On a terminal the lines are coloured (rich, which honours ``NO_COLOR``); piped, they
are plain text of the same width (``$COLUMNS``, else 80).
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import TYPE_CHECKING, Any

from gemma_chat.history.tree_layout import TreeRow, branches, tree_rows
from gemma_chat.sanitize import json_safe, one_line

if TYPE_CHECKING:
    from gemma_chat.history.store import HistoryStore

MAX_LEVELS = 8
"""The most side-branch levels drawn; a deeper line shows its depth as a number."""
MIN_TEXT = 20
"""The fewest characters of a message's text a line shows, however narrow the screen."""
PREVIEW = 200
"""The most characters of a message's text in ``--tree --json``."""
ROLES = {"user": "you", "model": "gemma"}

Segment = tuple[str, str | None]
"""A piece of a line and its rich style (None: plain)."""


def indent(row: TreeRow) -> str:
    """The tree glyphs before a row's text: ``├─`` where a side branch starts, ``│``
    where the lines it hangs from go on."""
    if row.depth == 0:
        return ""
    last = "├─ " if row.starts_branch else "│  "
    if row.depth <= MAX_LEVELS:
        return "│  " * (row.depth - 1) + last
    return f"{row.depth}┆ " + "│  " * (MAX_LEVELS - 2) + last


def fit(text: str, cells: int) -> str:
    """Untrusted text on one line of at most ``cells`` terminal cells, ending in ``…``
    when cut (a CJK character or an emoji takes two cells)."""
    from rich.cells import cell_len, set_cell_size

    shown = one_line(text, cells)
    if cell_len(shown) <= cells:
        return shown
    return set_cell_size(shown, cells - 1).rstrip() + "…"


def tree_lines(rows: list[TreeRow], width: int) -> list[list[Segment]]:
    """Each row as styled pieces of one line of at most ``width`` characters (the text
    keeps at least :data:`MIN_TEXT`)."""
    id_width = max((len(str(row.message.id)) for row in rows), default=1)
    lines = []
    for row in rows:
        message = row.message
        dim = None if row.active else "dim"
        head: list[Segment] = [
            ("*" if row.active else " ", "bold green" if row.active else None),
            (f" {message.id:>{id_width}}  ", "cyan" if row.active else "dim cyan"),
            (f"{ROLES.get(message.role, one_line(message.role, 5)):<5}  ", dim),
            (indent(row), "dim"),
        ]
        if row.versions > 1:
            head.append((f"{row.version}/{row.versions} ", "bold yellow"))
        used = sum(len(text) for text, _ in head)
        head.append((fit(message.text, max(width - used, MIN_TEXT)), dim))
        lines.append(head)
    return lines


def tree_json(store: HistoryStore, conversation_id: int) -> str:
    """The tree as JSON: the conversation, how many branches, and every message in the
    order the lines show them, each with its parent (a flat list: a long conversation
    is not nested thousands deep)."""
    record = store.get(conversation_id)
    every = store.all_messages(conversation_id)
    viewed = [message.id for message in store.messages(conversation_id)]
    rows = tree_rows(every, viewed)
    document: dict[str, Any] = {
        "conversation": {
            "id": record.id,
            "title": record.title,
            "active_id": viewed[-1] if viewed else None,
        },
        "branches": len(branches(every, viewed)),
        "messages": [_row_dict(row) for row in rows],
    }
    return json_safe(json.dumps(document, ensure_ascii=False, indent=2)) + "\n"


def _row_dict(row: TreeRow) -> dict[str, Any]:
    message = row.message
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role,
        "depth": row.depth,
        "starts_branch": row.starts_branch,
        "active": row.active,
        "version": row.version,
        "versions": row.versions,
        "partial": message.partial,
        "created_at": message.created_at,
        "preview": " ".join(message.text[: 4 * PREVIEW].split())[:PREVIEW],
    }


def print_tree(store: HistoryStore, conversation_id: int, json_out: bool = False) -> None:
    """Print the tree (``json_out``: :func:`tree_json`)."""
    if json_out:
        sys.stdout.write(tree_json(store, conversation_id))
        return
    record = store.get(conversation_id)
    every = store.all_messages(conversation_id)
    viewed = [message.id for message in store.messages(conversation_id)]
    count = len(branches(every, viewed))
    width = shutil.get_terminal_size().columns
    about = f" · {count} branch{'es' if count != 1 else ''} · * the branch viewed"
    title = fit(record.title, max(width - len(about) - 20, MIN_TEXT))
    heading: list[Segment] = [(f"Conversation {record.id}: {title}{about}", "bold")]
    lines = [heading, *tree_lines(tree_rows(every, viewed), width)]
    if not sys.stdout.isatty():
        for line in lines:
            print("".join(text for text, _ in line).rstrip())
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for line in lines:
        text = Text()
        for piece, style in line:
            text.append(piece, style=style)
        console.print(text)
