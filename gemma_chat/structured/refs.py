"""A schema's ``$ref`` links, checked before anything follows them.

Only references inside the schema itself (``#`` or a JSON pointer ``#/...``) are taken:
there is no network, and the validator would otherwise fail after the reply, mid-run.
A chain of references that comes back to itself without describing anything (``{"$ref":
"#"}``) would make the validator recurse forever; it is refused up front too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from gemma_chat.errors import UsageError
from gemma_chat.sanitize import one_line

_SHOWN = 60


def check_refs(schema: dict[str, Any]) -> None:
    """Refuse a schema whose ``$ref`` is not local, does not resolve, or loops.

    Raises:
        UsageError: One line naming the reference.
    """
    for node in _nodes(schema):
        ref = node.get("$ref")
        if ref is None:
            continue
        seen: list[int] = [id(node)]
        while isinstance(ref, str):
            target = _resolve(schema, ref)
            if id(target) in seen:
                raise UsageError(f"--schema: the $ref {_quoted(ref)} refers back to itself")
            seen.append(id(target))
            ref = target.get("$ref") if isinstance(target, dict) else None


def _resolve(schema: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise UsageError(
            f"--schema: only references inside the schema (#/...) are followed, not {_quoted(ref)}"
        )
    target: Any = schema
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise UsageError(f"--schema: the $ref {_quoted(ref)} is not a JSON pointer (#/...)")
    for raw in pointer.split("/")[1:] if pointer else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise UsageError(f"--schema: the $ref {_quoted(ref)} points at nothing")
    return target


def _nodes(value: Any) -> list[dict[str, Any]]:
    """Every object in the schema (it is at most 64 deep: iteration, no recursion)."""
    found, todo = [], [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found.append(item)
            todo += item.values()
        elif isinstance(item, list):
            todo += item
    return found


def _quoted(ref: str) -> str:
    text = one_line(ref)
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")
