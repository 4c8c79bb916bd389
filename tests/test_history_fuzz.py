"""Property-based tests for the import validator: whatever a file holds, importing it
either stores a conversation or raises the one-line UsageError, and a valid export
round-trips exactly. Example counts are bounded by the profile in conftest.py."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemma_chat.chat.conversation import StopReason
from gemma_chat.errors import UsageError
from gemma_chat.history import transfer
from gemma_chat.history.store import HistoryStore
from gemma_chat.sanitize import has_controls

# Text a valid export holds: everything but surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
# Text as JSON can carry it: any code point, and often a lone surrogate (a "\ud800"
# escape), which the validator must refuse, not crash on. Hypothesis rarely draws one
# unless asked.
ANY_TEXT = TEXT | st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=10)
INT64 = st.integers(0, 2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
VALID_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)


_UNIQUE = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryStore]:
    """One store for every example (opening one per example would be most of the run);
    each round-tripped export gets a uuid of its own."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    with HistoryStore(folder / "history.db") as opened:
        yield opened


def _import_or_usage_error(store: HistoryStore, text: str) -> None:
    try:
        new_id = transfer.import_json(store, text, "fuzz.json")
    except UsageError as exc:
        message = str(exc)
        assert message and "\n" not in message and not has_controls(message)
        assert len(message) < 10_000  # bounded, whatever the file holds
    else:
        assert store.get(new_id).id == new_id


@st.composite
def messages(draw: st.DrawFn, tree: bool = True) -> list[dict[str, Any]]:
    """Messages of a version 3 document (each names an earlier ``parent``), or with
    ``tree=False`` of a version 2 one (``replaced_by`` a later message)."""
    found: list[dict[str, Any]] = []
    count = draw(st.integers(0, 4))
    for position in range(count):
        later = st.integers(position + 1, count - 1) if position < count - 1 else st.none()
        earlier = st.integers(0, position - 1) if position else st.none()
        found.append(
            {
                "role": draw(st.sampled_from(["user", "model"])),
                "text": draw(TEXT),
                "stop_reason": draw(st.none() | st.sampled_from([r.value for r in StopReason])),
                "partial": draw(st.booleans()),
                "prompt_tokens": draw(st.none() | INT64),
                "completion_tokens": draw(st.none() | INT64),
                "ttft_s": draw(st.none() | FINITE),
                "tokens_per_s": draw(st.none() | FINITE),
                "model": draw(st.none() | TEXT),
                "model_sha256": draw(st.none() | TEXT),
                "sampling": draw(st.none() | st.dictionaries(TEXT, VALID_JSON, max_size=3)),
                "token_ids": draw(st.none() | st.lists(st.integers(0, 2**31 - 1), max_size=5)),
                "reply_to": draw(st.none() | st.integers(0, position - 1)) if position else None,
                "system": draw(st.none() | TEXT),
                "meta": draw(st.none() | st.dictionaries(TEXT, VALID_JSON, max_size=3)),
                **(
                    {"parent": draw(st.none() | earlier)}
                    if tree
                    else {"replaced_by": draw(st.none() | later)}
                ),
                "created_at": draw(TEXT),
            }
        )
    return found


@st.composite
def exports(draw: st.DrawFn, tree: bool = True) -> dict[str, Any]:
    found = draw(messages(tree))
    active = draw(st.integers(0, len(found) - 1)) if found and tree else None
    return {
        "format": "gemma-chat-conversation",
        "version": 3 if tree else 2,
        "conversation": {
            "id": draw(INT64),
            "uuid": draw(TEXT.filter(bool)),
            "title": draw(TEXT.filter(bool)),  # an empty title reads back as "Untitled"
            "system": draw(st.none() | TEXT),
            "params": draw(st.dictionaries(TEXT, VALID_JSON, max_size=3)),
            "created_at": draw(TEXT),
            "updated_at": draw(TEXT),
            "origin": draw(st.sampled_from([None, "app", "ask"])),
            **({"active": active} if tree else {}),
        },
        "messages": found,
    }


@given(document=exports())
def test_a_valid_export_round_trips(store: HistoryStore, document: dict[str, Any]) -> None:
    document["conversation"]["uuid"] += f"-{next(_UNIQUE)}"
    new_id = transfer.import_json(store, json.dumps(document))
    again = json.loads(transfer.export_json(store, new_id))
    assert again == {**document, "conversation": {**document["conversation"], "id": new_id}}


@given(document=exports(tree=False))
def test_a_version_2_export_imports_every_message_as_a_tree(
    store: HistoryStore, document: dict[str, Any]
) -> None:
    """A linear history (version 2) imports with every message, as branches; exported
    again it is version 3, and imports and exports again the same."""
    document["conversation"]["uuid"] += f"-{next(_UNIQUE)}"
    new_id = transfer.import_json(store, json.dumps(document))
    again = json.loads(transfer.export_json(store, new_id))
    assert again["version"] == 3
    assert [m["text"] for m in again["messages"]] == [m["text"] for m in document["messages"]]
    again["conversation"]["uuid"] += "-again"
    third = transfer.import_json(store, json.dumps(again))
    assert json.loads(transfer.export_json(store, third))["messages"] == again["messages"]


@given(document=exports(tree=False))
def test_a_version_1_export_imports_as_it_did(
    store: HistoryStore, document: dict[str, Any]
) -> None:
    """Documents from before version 2 (no meta, replaced_by, origin) still import, and
    export again as version 3 with those fields empty."""
    document["conversation"]["uuid"] += f"-{next(_UNIQUE)}"
    old = {**document, "version": 1, "conversation": dict(document["conversation"])}
    del old["conversation"]["origin"]
    old["messages"] = [
        {k: v for k, v in m.items() if k not in ("meta", "replaced_by")} for m in old["messages"]
    ]
    new_id = transfer.import_json(store, json.dumps(old))
    again = json.loads(transfer.export_json(store, new_id))
    assert again["version"] == 3 and again["conversation"]["origin"] is None
    assert all(m["meta"] is None for m in again["messages"])
    assert [m["text"] for m in again["messages"]] == [m["text"] for m in old["messages"]]


@given(value=JSONISH)
def test_any_json_is_imported_or_one_usage_error(store: HistoryStore, value: Any) -> None:
    _import_or_usage_error(store, json.dumps(value))


@given(text=st.text(max_size=200))
def test_any_text_is_imported_or_one_usage_error(store: HistoryStore, text: str) -> None:
    _import_or_usage_error(store, text)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@given(document=exports(), data=st.data())
def test_a_mutated_export_is_imported_or_one_usage_error(
    store: HistoryStore, document: dict[str, Any], data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(JSONISH)
    elif action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(ANY_TEXT)] = data.draw(JSONISH)
    else:
        parent.append(data.draw(JSONISH))
    _import_or_usage_error(store, json.dumps(document))


@given(document=exports(), data=st.data())
def test_a_lone_surrogate_anywhere_is_one_usage_error(
    store: HistoryStore, document: dict[str, Any], data: st.DataObject
) -> None:
    texts = [path for path in _paths(document)[1:] if isinstance(_at(document, path), str)]
    path = data.draw(st.sampled_from(texts))
    surrogate = data.draw(st.characters(categories=["Cs"]))
    parent = _at(document, path[:-1])
    parent[path[-1]] = data.draw(st.sampled_from(["", "x"])) + surrogate
    text = json.dumps(document)  # ASCII: the surrogate travels as a \\udXXX escape
    try:
        transfer.import_json(store, text, "fuzz.json")
    except UsageError as exc:
        assert "not valid Unicode" in str(exc)
    else:
        raise AssertionError("a lone surrogate was imported")


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value
