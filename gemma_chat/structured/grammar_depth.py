"""How deeply a GBNF grammar nests its groups, checked before llama.cpp parses it.

llama.cpp's grammar parser recurses once per parenthesis, on the C stack: a grammar
nested tens of thousands deep (a raw ``--grammar`` file, or a schema whose ``maxLength``
llama-cpp-python's converter unrolls into nested optional groups) overflows it and kills
the process. Refusing it first is a one-line usage error instead of a crash.
"""

from __future__ import annotations

from gemma_chat.errors import UsageError

MAX_NESTING = 1024
"""The deepest nesting of ``( )`` groups accepted (a ``maxLength`` of about 1000)."""


def nesting(grammar: str) -> int:
    """The deepest ``(`` nesting of a GBNF grammar, outside strings, character classes and
    comments."""
    deepest = depth = 0
    i, size = 0, len(grammar)
    while i < size:
        char = grammar[i]
        if char in '"[':
            close = '"' if char == '"' else "]"
            i += 1
            while i < size and grammar[i] != close:
                i += 2 if grammar[i] == "\\" else 1
        elif char == "#":
            while i < size and grammar[i] != "\n":
                i += 1
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def check_nesting(grammar: str, what: str) -> None:
    """Refuse a grammar nested deeper than :data:`MAX_NESTING`.

    Raises:
        UsageError: It is (``what`` names the option, e.g. ``--grammar``).
    """
    found = nesting(grammar)
    if found > MAX_NESTING:
        raise UsageError(
            f"{what}: the grammar nests {found} groups deep, more than llama.cpp can parse "
            f"safely ({MAX_NESTING}); for a schema, lower maxLength/maxItems"
        )
