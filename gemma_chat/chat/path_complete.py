"""Completing file paths in the input: after ``/read `` and in an ``@path`` word.

Pure (no Textual). A completion is the whole input text with the path completed, so the
input's Tab can cycle through them as it does through slash commands.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_AT_WORD = re.compile(r"(?:^|(?<=\s))@(\S*)$")
_READ = re.compile(r"^/read\s+(\S*)$")
MAX_MATCHES = 50
"""More than this many entries in a folder: only the first ones, sorted, are offered."""
AT_PATH = re.compile(r"(?:^|(?<=\s))@(\S+)")
"""An ``@path`` word in a message."""


def path_candidates(partial: str) -> list[str]:
    """Paths that start with ``partial`` (folders end with ``/``), sorted; hidden
    entries only when ``partial``'s last part starts with a dot."""
    expanded = os.path.expanduser(partial)
    folder, _, start = expanded.rpartition("/")
    base = Path(folder + "/" if folder or expanded.startswith("/") else ".")
    try:
        entries = sorted(os.scandir(base), key=lambda entry: entry.name)
    except OSError:
        return []
    shown = partial[: len(partial) - len(start)]
    out = []
    for entry in entries:
        if not entry.name.startswith(start) or (entry.name.startswith(".") and not start):
            continue
        try:
            folder_entry = entry.is_dir()
        except OSError:
            folder_entry = False
        out.append(shown + entry.name + ("/" if folder_entry else ""))
        if len(out) >= MAX_MATCHES:
            break
    return out


def complete_paths(text: str) -> list[str]:
    """The input ``text`` with its path completed, one per match (none when the text
    does not end in a path after ``/read`` or ``@``)."""
    if "\n" in text:
        return []
    match = _READ.match(text) or _AT_WORD.search(text)
    if match is None:
        return []
    partial = match.group(1)
    head = text[: match.start(1)]
    return [head + candidate for candidate in path_candidates(partial)]


def at_paths(text: str) -> list[str]:
    """The ``@path`` words of a message that name existing files, in order, once each."""
    found: list[str] = []
    for match in AT_PATH.finditer(text):
        name = match.group(1).rstrip(".,;:!?)")
        if name not in found and os.path.isfile(os.path.expanduser(name)):
            found.append(name)
    return found
