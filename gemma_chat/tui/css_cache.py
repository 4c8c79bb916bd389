"""The styles of a streamed reply's Markdown blocks, matched once per kind of block.

Textual matches the stylesheet's rules against every widget it mounts, and against four
virtual nodes more for a Markdown block (its ``em``, ``strong``, ``s`` and
``code_inline`` styles), with a cache that lasts one mount and is keyed by the parent
widget: a list item's paragraph (one parent per item) is matched again for each item.
That matching is about a third of what mounting a block costs, and a streamed reply
mounts hundreds of blocks that look alike.

:func:`install` makes an app's stylesheet remember the rules matched for a node inside a
Markdown widget, keyed by everything a selector can test on the node and its ancestors:
each one's type, id, classes and state (hover, focus, disabled, focusable), and the
app's own id, classes and pseudo-classes (dark or light, ANSI colours, inline, no
colour). A node whose
rules test its place among its siblings (``:first-child``, ``:odd``...) or
``:focus-within`` is never remembered (as in Textual's own cache). The memory holds for
one version of the stylesheet: a theme change or a new stylesheet builds new rules, and
Textual then styles every node again. It relies on Textual's private names (8.2): a
Textual without them, or with a pseudo-class it does not know, is left as it is.
"""

from __future__ import annotations

from typing import Any

from textual.css.constants import VALID_PSEUDO_CLASSES
from textual.css.stylesheet import Stylesheet
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Markdown

_MAX = 512
"""Kinds of node remembered at most (then forgotten and learned again)."""

_KEYED = {"hover", "focus", "blur", "can-focus", "disabled", "enabled"}
_APP = {"dark", "light", "ansi", "inline", "nocolor"}
_NEVER = {"focus-within", "first-of-type", "last-of-type", "first-child", "last-child"}
_NEVER |= {"odd", "even", "empty"}
_FLAGS = ("_has_hover_style", "_has_focus_within", "_has_order_style", "_has_odd_or_even")
"""The pseudo-classes the memory knows (in its key, or never remembered), and Textual's
own flags it sets: a Textual with other ones (a new pseudo-class, a renamed flag) is
left to style every node itself."""


def supported() -> bool:
    """Whether this Textual's stylesheet is the one the memory was written for."""
    node = DOMNode()
    return (
        set(VALID_PSEUDO_CLASSES) <= _KEYED | _APP | _NEVER
        and all(hasattr(node, flag) for flag in _FLAGS)
        and hasattr(node, "_css_styles")
        and all(
            hasattr(Stylesheet, name)
            for name in ("_process_component_classes", "replace_rules", "rules_map")
        )
    )


def _state(node: DOMNode) -> tuple[Any, ...]:
    if isinstance(node, Widget):
        return (
            type(node),
            node._id,
            frozenset(node._classes),
            node.mouse_hover,
            node.has_focus,
            node.disabled,
            node.allow_focus(),  # what :can-focus tests
        )
    if node.parent is None:  # the app: dark or light, ANSI, inline, no colour, focus
        pseudo = frozenset(node.get_pseudo_classes())
        return (type(node), node._id, frozenset(node._classes), pseudo)
    return (type(node), node._id, frozenset(node._classes))


def _key(node: DOMNode) -> tuple[Any, ...] | None:
    """Everything a selector can test on ``node`` and its ancestors (None: not inside a
    Markdown widget)."""
    chain = []
    current: DOMNode | None = node
    while current is not None:
        chain.append(current)
        current = current._parent
    # Every node the app styles comes here: the states are built only for those kept.
    if not any(isinstance(each, Markdown) for each in chain):
        return None
    return tuple(_state(each) for each in chain)


class _Memo:
    def __init__(self) -> None:
        self.rules_map: Any = None  # the stylesheet version the entries are for
        self.entries: dict[tuple[Any, ...], tuple[dict[str, Any], bool]] = {}


def install(stylesheet: Stylesheet) -> None:
    """Make ``stylesheet`` (an app's) remember the rules of Markdown blocks."""
    if getattr(stylesheet, "_gemma_memo", None) is not None or not supported():
        return
    memo = _Memo()
    stylesheet._gemma_memo = memo  # type: ignore[attr-defined]
    apply = stylesheet.apply

    def remembering_apply(
        node: DOMNode, *, animate: bool = False, cache: dict[tuple, Any] | None = None
    ) -> None:
        key = None if animate else _key(node)
        if key is None:
            apply(node, animate=animate, cache=cache)
            return
        rules_map = stylesheet.rules_map
        if memo.rules_map is not rules_map:
            memo.rules_map = rules_map
            memo.entries.clear()
        found = memo.entries.get(key)
        if found is not None:
            rules, hover = found
            node._has_hover_style = hover
            node._has_focus_within = False
            node._has_order_style = False
            node._has_odd_or_even = False
            stylesheet.replace_rules(node, dict(rules))
            stylesheet._process_component_classes(node)
            return
        apply(node, animate=animate, cache=cache)
        if node._has_focus_within or node._has_order_style or node._has_odd_or_even:
            return  # depends on more than the key: matched each time
        if len(memo.entries) >= _MAX:
            memo.entries.clear()
        memo.entries[key] = (dict(node._css_styles._rules), node._has_hover_style)

    stylesheet.apply = remembering_apply  # type: ignore[method-assign]
