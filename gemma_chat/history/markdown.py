"""The Markdown transcript of a conversation (``history show``, ``history export --format
md``): the branch last viewed, or every branch with ``--all-branches``.

With every branch, the branch viewed comes first, whole; then each other branch, once,
from where it leaves the branches above it ("Branch 2 of 3 · after message 5"), so no
message is written twice. Messages are then headed with their ids, the ids ``history show
--tree`` lists and ``ask --from`` takes.

A transcript is for reading, in a terminal or a viewer, so its text is sanitized
(:mod:`gemma_chat.sanitize`): an escape sequence in a message is shown, never obeyed.
"""

from __future__ import annotations

from gemma_chat.history.meta_text import attachment_line, compaction_line, map_reduce_lines
from gemma_chat.history.records import MessageRecord
from gemma_chat.history.store import HistoryStore
from gemma_chat.history.tree_layout import Branch, branches
from gemma_chat.sanitize import one_line, visible

FORK_QUOTE = 80
"""The most characters of a fork's message quoted where a branch leaves it."""


def export_markdown(
    store: HistoryStore, conversation_id: int, verbose: bool = False, all_branches: bool = False
) -> str:
    """A conversation as a readable Markdown transcript, safe for a terminal (control
    characters shown as visible stand-ins; the JSON export keeps them). Attached files
    are named; ``verbose`` adds a long input's notes, step by step; ``all_branches``
    writes every branch (see the module docstring), not only the one last viewed."""
    record = store.get(conversation_id)
    viewed = store.messages(conversation_id)
    found = branches(store.all_messages(conversation_id), [m.id for m in viewed])
    lines = [f"# {one_line(record.title)}", ""]
    about = f"*Conversation {record.id} · started {_when(record.created_at)}"
    if len(found) > 1 and not all_branches:
        about += f" · the branch last viewed, of {len(found)} (--all-branches shows every one)"
    elif len(found) > 1:
        about += f" · {len(found)} branches, the one last viewed first"
    lines += [about + "*", ""]
    if record.system:
        lines += ["**System prompt:**", "", *_quoted(record.system), ""]
    if not all_branches or len(found) < 2:
        for message in viewed:
            lines += _message_lines(message, verbose)
    else:
        for number, branch in enumerate(found, 1):
            lines += _branch_lines(branch, number, len(found), verbose)
    return visible("\n".join(lines).rstrip() + "\n")


def _branch_lines(branch: Branch, number: int, count: int, verbose: bool) -> list[str]:
    """One branch of an ``--all-branches`` transcript: a heading saying where it leaves
    the branches above, then the messages they did not show."""
    lines = ["---", ""] if number > 1 else []
    if branch.active:
        heading = f"## Branch {number} of {count} (the one last viewed)"
    elif branch.new_from == 0:
        heading = f"## Branch {number} of {count} · from the start"
    else:
        fork = branch.messages[branch.new_from - 1]
        heading = f"## Branch {number} of {count} · after message {fork.id}"
    lines += [heading, ""]
    if branch.new_from > 0 and not branch.active:
        fork = branch.messages[branch.new_from - 1]
        quote = one_line(fork.text, FORK_QUOTE)
        lines += [f"*It follows message {fork.id}, {_who(fork)}: “{quote}”*", ""]
    for message in branch.new:
        lines += _message_lines(message, verbose, numbered=True)
    return lines


def _who(message: MessageRecord) -> str:
    return "You" if message.role == "user" else "Gemma"


def _message_lines(message: MessageRecord, verbose: bool, numbered: bool = False) -> list[str]:
    """A message as a heading and its text (``numbered``: the heading names its id)."""
    number = f" · message {message.id}" if numbered else ""
    if message.role == "user":
        lines = []
        if marker := compaction_line(message.meta):
            lines += [marker, ""]
        lines += [f"## You{number}", ""]
        if attached := attachment_line(message.meta):
            lines += [attached, ""]
        return [*lines, message.text.rstrip(), ""]
    model = f" ({one_line(message.model)})" if message.model else ""
    lines = [f"## Gemma{model}{number}", "", *map_reduce_lines(message.meta, verbose)]
    lines += [message.text.rstrip(), ""]
    if message.partial:
        lines += [f"*(reply stopped: {message.stop_reason})*", ""]
    return lines


def _quoted(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.splitlines()]


def _when(stamp: str) -> str:
    """``2026-11-30 13:45 UTC`` from a stored time."""
    return stamp[:16].replace("T", " ") + " UTC"
