"""llama-server's native stream, read as untrusted input (no binary needed)."""

from __future__ import annotations

import pytest

from gemma_chat.backend.llama_server import is_llama_server, parse_token_chunk
from gemma_chat.backend.sse import RemoteError

BASE = "http://127.0.0.1:1"


def test_a_token_chunk_and_the_last_chunk_are_read() -> None:
    chunk = parse_token_chunk(
        {"content": " Sure", "tokens": [370], "stop": False, "tokens_predicted": 1}, BASE
    )
    assert (chunk.text, chunk.tokens, chunk.predicted, chunk.finish_reason) == (
        " Sure",
        (370,),
        1,
        None,
    )
    last = parse_token_chunk(
        {
            "content": "",
            "tokens": [],
            "stop": True,
            "stop_type": "limit",
            "tokens_evaluated": 38,
            "timings": {"prompt_n": 13, "cache_n": 25},
        },
        BASE,
    )
    assert (last.finish_reason, last.prompt_tokens, last.evaluated, last.cached) == (
        "limit",
        38,
        13,
        25,
    )


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"content": 5, "tokens": []},
        {"content": "", "tokens": ["106"]},
        {"content": "", "tokens": [True]},
        {"content": "", "tokens": [-1]},
        {"content": "", "tokens": [2**40]},
        {"content": "", "tokens": 106},
    ],
)
def test_a_malformed_chunk_is_a_one_line_error(payload: object) -> None:
    with pytest.raises(RemoteError, match="malformed SSE"):
        parse_token_chunk(payload, BASE)


def test_an_error_event_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="error mid-reply: slot busy"):
        parse_token_chunk({"error": {"message": "slot busy"}}, BASE)


def test_absurd_counts_are_ignored() -> None:
    chunk = parse_token_chunk(
        {"content": "", "tokens": [], "tokens_evaluated": 2**70, "timings": {"prompt_n": -3}},
        BASE,
    )
    assert chunk.prompt_tokens is None and chunk.evaluated is None


def test_only_llama_servers_props_count() -> None:
    assert is_llama_server({"default_generation_settings": {}, "build_info": "b1-0c1e570"})
    assert not is_llama_server({"default_generation_settings": {}})
    assert not is_llama_server(None)
    assert not is_llama_server({"detail": "Not Found"})
