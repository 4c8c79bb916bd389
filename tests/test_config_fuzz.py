"""Fuzzing the config loader (Hypothesis): whatever a config file holds, loading it
either gives settings or raises the one-line UsageError, never anything else; and
valid configs load to exactly what they say."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gemma_chat.config.config_file import load_config
from gemma_chat.config.settings import Settings
from gemma_chat.errors import UsageError

SETTING_NAMES = [*Settings.model_fields, "sampling", "repeat_guard", "state_cache", "remote"]
NESTED_NAMES = ["temperature", "top_k", "seed", "max_tokens", "enabled", "base_url", "x"]


def toml_value(value: Any) -> str:
    """A TOML literal for a generated value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    items = (f"{toml_key(key)} = {toml_value(item)}" for key, item in value.items())
    return "{" + ", ".join(items) + "}"


def toml_key(text: str) -> str:
    # A JSON string is a TOML basic string once DEL is escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(key)} = {toml_value(value)}\n" for key, value in data.items())


scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NESTED_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
documents = st.dictionaries(
    st.sampled_from(SETTING_NAMES) | st.text(max_size=12), values, max_size=6
)


def _load(tmp_path: Path, content: bytes) -> dict[str, Any] | None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    try:
        data = load_config(path)
    except UsageError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), message
        return None
    Settings.model_validate(data)  # what loads is valid settings
    return data


@given(content=st.binary(max_size=300))
def test_any_bytes_load_or_give_a_usage_error(tmp_path_factory, content: bytes) -> None:
    _load(tmp_path_factory.mktemp("fuzz"), content)


@given(data=documents)
def test_any_toml_document_loads_or_gives_a_usage_error(tmp_path_factory, data) -> None:
    _load(tmp_path_factory.mktemp("fuzz"), toml_document(data).encode())


valid_documents = st.fixed_dictionaries(
    {},
    optional={
        "system": st.text(max_size=30).filter(lambda s: "\x00" not in s or True),
        "ctx": st.integers(min_value=1, max_value=2**40),
        "threads": st.integers(min_value=1, max_value=512),
        "gpu_layers": st.integers(min_value=0, max_value=1000) | st.sampled_from(["all", "auto"]),
        "flash_attn": st.booleans(),
        "save_history": st.booleans(),
        "keys": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
        "sampling": st.fixed_dictionaries(
            {},
            optional={
                "temperature": st.floats(min_value=0, max_value=5),
                "top_k": st.integers(min_value=0, max_value=2**31 - 1),
                "top_p": st.floats(min_value=0.01, max_value=1),
                "seed": st.integers(min_value=0, max_value=2**32 - 2),
                "max_tokens": st.integers(min_value=1, max_value=2**40),
            },
        ),
    },
)


@given(data=valid_documents)
def test_valid_configs_load_as_written(tmp_path_factory, data) -> None:
    loaded = _load(tmp_path_factory.mktemp("fuzz"), toml_document(data).encode())
    assert loaded == data
