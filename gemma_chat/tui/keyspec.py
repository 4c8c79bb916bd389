"""Checking ``[keys]``, the user's key remapping, before Textual sees it.

Textual takes any string as a key and silently never matches one it does not know, and
it ignores a binding id no widget has. So a typo would leave a binding on its default
key with no word said. :func:`check_keymap` splits the remapping into what is usable
and one line per bad entry; the app applies the first and reports the second once, in
one notification (the same way bad theme files are reported). Only ``textual.keys``
(plain data, no widgets) is imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.keys import REPLACED_KEYS, Keys, _character_to_key, key_to_character

from gemma_chat.sanitize import one_line

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
"""The modifiers Textual puts in front of a key name (``ctrl+shift+left``)."""
# Key names that are not characters: escape, f1..f24, up, pageup, tab, space, ...
_NAMED_KEYS = frozenset(
    key.value.rpartition("+")[2] for key in Keys if not key.value.startswith("<")
) - {""}
_MAX_SHOWN = 10


def key_problem(key: str) -> str | None:
    """Why ``key`` (one key, such as ``ctrl+r`` or ``f5``) is not a key Textual can
    match, or None when it is fine."""
    if not key:
        return "an empty key"
    if len(key) == 1:  # a character, "+" included
        return None if key.isprintable() and not key.isspace() else f"{key!r} is not a key"
    *modifiers, base = key.split("+")
    bad = [mod for mod in modifiers if mod not in MODIFIERS]
    if bad or len(set(modifiers)) != len(modifiers):
        return f"{key!r} has a bad modifier (use {', '.join(sorted(MODIFIERS))})"
    if not base:
        return f"{key!r} names no key after its modifiers"
    if len(base) == 1:
        return None if base.isprintable() and not base.isspace() else f"{key!r} is not a key"
    if base in _NAMED_KEYS:
        return None
    # A character by its name (question_mark, slash), as Textual names key presses.
    char = key_to_character(REPLACED_KEYS.get(base, base))
    if char is not None and _character_to_key(char) == base:
        return None
    return f"{key!r} is not a key (e.g. ctrl+r, f5, escape, question_mark)"


def check_keymap(
    keymap: Mapping[str, str], known_ids: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """Split a ``[keys]`` table into what can be applied and what cannot.

    An entry is skipped whole (its binding keeps the default key) when its binding id
    is unknown or any of its comma-separated keys is not a key.

    Args:
        keymap: Binding id to keys, as in the config (``"gemma.retry" = "f5,ctrl+r"``).
        known_ids: The ids of every binding the app has.

    Returns:
        ``(usable, problems)``: the entries to give ``App.set_keymap`` (keys stripped of
        spaces), and one line per skipped entry.
    """
    known = set(known_ids)
    usable: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, spec in keymap.items():
        name = one_line(binding_id)
        if binding_id not in known:
            problems.append(f"{name}: no such binding (F1 lists them)")
            continue
        keys = [key.strip() for key in spec.split(",")]
        reasons = list(dict.fromkeys(filter(None, map(key_problem, keys))))
        if reasons:
            problems.append(f"{name} = {one_line(repr(spec))}: {'; '.join(reasons)}")
        else:
            usable[binding_id] = ",".join(keys)
    return usable, problems


def keymap_message(problems: list[str]) -> str:
    """The one notification listing every skipped ``[keys]`` entry ("" when none)."""
    if not problems:
        return ""
    count = len(problems)
    heading = (
        "1 [keys] entry in the config was skipped:"
        if count == 1
        else f"{count} [keys] entries in the config were skipped:"
    )
    lines = [f"• {problem}" for problem in problems[:_MAX_SHOWN]]
    if count > _MAX_SHOWN:
        lines.append(f"(and {count - _MAX_SHOWN} more)")
    return "\n".join([heading, *lines])
