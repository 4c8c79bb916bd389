"""Self-checks for the tiny Gemma 2 GGUF builder, run for real in llama.cpp."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterator
from pathlib import Path

import gguf
import llama_cpp
import pytest
import stories
from tinygemma import TinyModel, build_tiny_gemma2

PROMPT = "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"

STORY = stories.RUNAWAY
# After the script, the chain loops from <end_of_turn> into an invented user turn.
STORY_RUNAWAY = (*STORY, "\n", "<start_of_turn>", "user\n", "▁Tell", "▁more")

LONG_PIECE = "▁प्रधानमंत्री"
BYTES_SCRIPT = (LONG_PIECE, "<0xE4>", "<0xB8>", "<0xAD>", "<end_of_turn>")
BYTES_EXPECTED = (*BYTES_SCRIPT, *["<end_of_turn>"] * 5)

Loaded = tuple[TinyModel, llama_cpp.Llama]


def _load(model: TinyModel) -> Iterator[Loaded]:
    llm = llama_cpp.Llama(model_path=str(model.path), n_ctx=512, verbose=False)
    try:
        yield model, llm
    finally:
        llm.close()


def _prompt_tokens(llm: llama_cpp.Llama) -> list[int]:
    return llm.tokenize(PROMPT.encode(), add_bos=True, special=True)


def _greedy(model: TinyModel, llm: llama_cpp.Llama, n: int) -> list[int]:
    """Greedily generates n tokens after the chat prompt."""
    prompt = _prompt_tokens(llm)
    assert prompt[-1] == model.id("model\n")
    llm.reset()
    tokens = llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0)
    return list(itertools.islice(tokens, n))


def _piece(llm: llama_cpp.Llama, token: int) -> bytes:
    """Decodes one token with a buffer large enough for any piece."""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    assert n >= 0
    return buf.raw[:n]


def _gguf_tokens(path: Path) -> list[str]:
    field = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The runaway story model, loaded once."""
    path = tmp_path_factory.mktemp("story") / "story.gguf"
    yield from _load(build_tiny_gemma2(path, STORY))


@pytest.fixture(scope="module")
def bytes_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """A model whose script has a >32-byte piece and a split character."""
    path = tmp_path_factory.mktemp("bytes") / "bytes.gguf"
    yield from _load(build_tiny_gemma2(path, BYTES_SCRIPT))


@pytest.fixture(scope="module")
def no_softcap(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A model written without the soft-capping keys (never loaded)."""
    path = tmp_path_factory.mktemp("nosoftcap") / "nosoftcap.gguf"
    return build_tiny_gemma2(path, STORY, softcap=False)


@pytest.fixture(scope="module")
def duplicate(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A model with a duplicated token text (never loaded in-process)."""
    path = tmp_path_factory.mktemp("duplicate") / "duplicate.gguf"
    return build_tiny_gemma2(path, STORY, duplicate_token=True)


def test_vocab_layout_follows_gemma2(story: Loaded) -> None:
    """Ids 0..107 follow Gemma 2, then the byte tokens; the file is small."""
    model, llm = story
    assert model.tokens[:6] == ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]")
    assert model.id("<start_of_turn>") == 106
    assert model.id("<end_of_turn>") == 107
    assert model.id("<0x00>") == 108
    assert model.id("<0xFF>") == 363
    assert len(set(model.tokens)) == len(model.tokens)
    assert llm.n_vocab() == len(model.tokens)
    assert (llm.token_bos(), llm.token_eos()) == (2, 1)
    assert model.path.stat().st_size < 1_000_000
    with pytest.raises(KeyError):
        model.id("▁absent")


def test_prompt_tokenizes_predictably(story: Loaded) -> None:
    r"""The chat prompt tokenizes into known ids and ends with "model\n"."""
    model, llm = story
    expected = [
        "<bos>",
        "<start_of_turn>",
        "user\n",
        "<0x48>",  # H
        "<0x69>",  # i
        "<end_of_turn>",
        "\n",
        "<start_of_turn>",
        "model\n",
    ]
    assert _prompt_tokens(llm) == [model.id(text) for text in expected]


def test_runaway_story_is_followed_greedily(story: Loaded) -> None:
    """Greedy decoding follows the script, then loops into a user turn."""
    model, llm = story
    generated = _greedy(model, llm, len(STORY) + 5)
    assert [model.tokens[t] for t in generated] == list(STORY_RUNAWAY)


def test_long_piece_and_split_character(bytes_model: Loaded) -> None:
    """A 39-byte piece and the three byte tokens of 中 are generated."""
    model, llm = bytes_model
    assert len(LONG_PIECE.encode()) > 32
    generated = _greedy(model, llm, len(BYTES_SCRIPT) + 5)
    assert [model.tokens[t] for t in generated] == list(BYTES_EXPECTED)
    assert _piece(llm, generated[0]) == LONG_PIECE.replace("▁", " ").encode()
    assert b"".join(_piece(llm, t) for t in generated[1:4]).decode() == "中"


def test_softcap_false_omits_softcapping_keys(story: Loaded, no_softcap: TinyModel) -> None:
    """softcap=False drops both soft-capping keys and nothing else."""
    keys = ("gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping")
    with_caps = gguf.GGUFReader(story[0].path).fields
    without_caps = gguf.GGUFReader(no_softcap.path).fields
    for key in keys:
        assert key in with_caps
        assert key not in without_caps
    assert "gemma2.attention.sliding_window" in without_caps


def test_duplicate_token_is_in_file(duplicate: TinyModel) -> None:
    """duplicate_token=True writes two entries with the same text."""
    # Never load this file with llama.cpp in-process: it GGML_ASSERT-aborts.
    tokens = _gguf_tokens(duplicate.path)
    assert tokens == list(duplicate.tokens)
    assert len(set(tokens)) == len(tokens) - 1
    assert tokens.count("user") == 2


def test_gguf_roundtrip_matches_model(story: Loaded) -> None:
    """The file declares gemma2 and holds exactly TinyModel.tokens."""
    model, _ = story
    reader = gguf.GGUFReader(model.path)
    assert _gguf_tokens(model.path) == list(model.tokens)
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "gemma2"


def test_inconsistent_script_is_rejected(tmp_path: Path) -> None:
    """Scripts that no Markov chain can follow raise ValueError."""
    with pytest.raises(ValueError, match="Markov chain"):
        build_tiny_gemma2(tmp_path / "bad.gguf", ["▁a", "▁b", "▁a", "▁c"])
    with pytest.raises(ValueError, match="at least one"):
        build_tiny_gemma2(tmp_path / "empty.gguf", [])
    with pytest.raises(ValueError, match="byte_tokens=False"):
        build_tiny_gemma2(tmp_path / "nob.gguf", ["<0xE4>"], byte_tokens=False)
    with pytest.raises(TypeError):
        build_tiny_gemma2(tmp_path / "str.gguf", "▁a")
