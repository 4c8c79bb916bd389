"""How deeply a JSON value nests: schemas and imported metadata come from files, and the
code that walks them recurses."""

from __future__ import annotations

from typing import Any


def json_depth(value: Any) -> int:
    """The deepest nesting of objects and arrays in ``value`` (a scalar is 0). Iterative,
    so any depth is measured without recursing."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            todo += [(child, level + 1) for child in item.values()]
        elif isinstance(item, list):
            todo += [(child, level + 1) for child in item]
    return deepest
