"""Deterministic tiny Gemma 2 GGUF models for tests.

``build_tiny_gemma2`` writes a real ``gemma2`` GGUF file (well under 1 MB) that
llama.cpp loads and runs like any Gemma 2 model, but whose greedy output is a
fixed *script* of tokens chosen by the test. This lets tests reproduce model
behaviour such as the Gemma 2 runaway past ``<end_of_turn>`` into an invented
user turn, pieces longer than 32 bytes, or characters split over byte tokens.

How it works:

* The vocabulary follows Gemma 2 for ids 0..107 (``<pad>``, ``<eos>``, ``<bos>``,
  ``<unk>``, ``<mask>``, ``[@BOS@]``, ``<unused0>``..``<unused99>``,
  ``<start_of_turn>`` = 106, ``<end_of_turn>`` = 107), then the 256 byte tokens
  ``<0x00>``..``<0xFF>``, then normal SentencePiece pieces.
* Embeddings are one-hot (``d_model`` = vocabulary size rounded up to a
  multiple of 32), all attention weights are zero, and the first block's
  GELU-gated FFN maps each token's embedding to its successor's. A large
  ``post_ffw_norm`` weight makes the successor dominate the residual stream, so
  the tied output head gives the successor a logit far above all others. The
  model is therefore a pure first-order Markov chain over tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

__all__ = ["TinyModel", "build_tiny_gemma2"]

PAD_ID = 0
EOS_ID = 1
BOS_ID = 2
UNK_ID = 3
START_OF_TURN_ID = 106
END_OF_TURN_ID = 107

#: Normal pieces always present, so that the chat template tokenizes predictably.
BASE_PIECES: tuple[str, ...] = ("\n", "▁", "user", "model", "user\n", "model\n")

_BYTE_TOKEN_RE = re.compile(r"<0x[0-9A-F]{2}>")

_N_LAYERS = 2
_N_HEAD = 2
_N_HEAD_KV = 1
_HEAD_DIM = 8
_SLIDING_WINDOW = 512
_RMS_EPS = 1e-6
_ATTN_SOFTCAP = 50.0
_FINAL_SOFTCAP = 30.0
# Weight of the first block's post-FFN norm: the successor's share of the
# residual stream relative to the current token's one-hot embedding (1.0).
_SUCCESSOR_GAIN = 100.0


@dataclass(frozen=True)
class TinyModel:
    """A tiny Gemma 2 GGUF file written by :func:`build_tiny_gemma2`.

    Attributes:
        path: Location of the GGUF file.
        tokens: Token text by id, exactly as stored in the vocabulary (spaces
            in normal pieces are spelled ``"▁"``, bytes as ``"<0xE4>"``).
    """

    path: Path
    tokens: tuple[str, ...]

    def id(self, text: str) -> int:
        """Returns the id of a token given its exact vocabulary text.

        If the text occurs more than once (``duplicate_token=True``), the
        lowest id is returned.

        Args:
            text: The token text as stored in the vocabulary, e.g. ``"▁upon"``,
                ``"<end_of_turn>"`` or ``"<0xE4>"``.

        Returns:
            The token id.

        Raises:
            KeyError: If no token has exactly this text.
        """
        try:
            return self.tokens.index(text)
        except ValueError:
            raise KeyError(text) from None


def _gemma_head(turn_tokens: bool = True) -> list[tuple[str, gguf.TokenType]]:
    """Returns Gemma 2's first 108 vocabulary entries with their token types.

    With ``turn_tokens`` False, ids 106 and 107 become unused tokens, as in a
    vocabulary that is not Gemma's chat vocabulary.
    """
    head: list[tuple[str, gguf.TokenType]] = [
        ("<pad>", gguf.TokenType.CONTROL),
        ("<eos>", gguf.TokenType.CONTROL),
        ("<bos>", gguf.TokenType.CONTROL),
        ("<unk>", gguf.TokenType.UNKNOWN),
        ("<mask>", gguf.TokenType.CONTROL),
        ("[@BOS@]", gguf.TokenType.CONTROL),
    ]
    head += [(f"<unused{i}>", gguf.TokenType.UNUSED) for i in range(START_OF_TURN_ID - len(head))]
    if not turn_tokens:
        return head + [(f"<unused{i}>", gguf.TokenType.UNUSED) for i in (100, 101)]
    head += [
        ("<start_of_turn>", gguf.TokenType.CONTROL),
        ("<end_of_turn>", gguf.TokenType.CONTROL),
    ]
    return head


def _byte_tokens() -> list[tuple[str, gguf.TokenType]]:
    """Returns the 256 SentencePiece byte-fallback tokens."""
    return [(f"<0x{b:02X}>", gguf.TokenType.BYTE) for b in range(256)]


def _validate_script(script: Sequence[str], *, byte_tokens: bool) -> None:
    """Checks the script's entries before the vocabulary is built.

    Args:
        script: Token texts to be generated in order.
        byte_tokens: Whether the vocabulary will contain byte tokens.

    Raises:
        TypeError: If the script is a single string.
        ValueError: If the script is empty, has an empty entry, or names a
            byte token while ``byte_tokens`` is False.
    """
    if isinstance(script, str):
        raise TypeError("script must be a sequence of token texts, not one string")
    if not script:
        raise ValueError("script must contain at least one token")
    for position, text in enumerate(script):
        if not text:
            raise ValueError(f"script[{position}] is an empty token text")
        if not byte_tokens and _BYTE_TOKEN_RE.fullmatch(text):
            raise ValueError(
                f"script[{position}] is the byte token {text!r}, "
                "but byte_tokens=False omits byte tokens"
            )


def _successors(script: Sequence[str]) -> dict[str, tuple[str, str]]:
    r"""Builds the Markov chain that greedy decoding must follow.

    Args:
        script: Token texts to be generated in order after ``"model\n"``.

    Returns:
        A mapping from token text to ``(successor text, where it was defined)``.

    Raises:
        ValueError: If a token would need two different successors.
    """
    chain: dict[str, tuple[str, str]] = {}
    edges = [("model\n", script[0], "the prompt's final 'model\\n'")]
    edges += [
        (script[k], script[k + 1], f"script[{k}] -> script[{k + 1}]")
        for k in range(len(script) - 1)
    ]
    for token, successor, where in edges:
        previous = chain.get(token)
        if previous is not None and previous[0] != successor:
            raise ValueError(
                f"inconsistent script: token {token!r} is followed by "
                f"{previous[0]!r} ({previous[1]}) and by {successor!r} ({where}); "
                "the tiny model is a Markov chain, so every occurrence of a "
                "token must have the same successor"
            )
        chain.setdefault(token, (successor, where))
    last = script[-1]
    chain.setdefault(last, (last, "last script token repeats itself"))
    return chain


def _prefix_pieces(piece: str) -> list[str]:
    """Returns the proper prefixes (of two or more characters) of a piece.

    llama.cpp's SentencePiece tokenizer builds a piece by merging adjacent
    symbols whose concatenation is in the vocabulary, so a piece can only be
    produced from text if its prefixes are pieces too.

    Args:
        piece: A normal piece text.

    Returns:
        The prefixes, shortest first.
    """
    return [piece[:n] for n in range(2, len(piece))]


def _build_vocab(
    script: Sequence[str],
    extra_pieces: Sequence[str],
    *,
    byte_tokens: bool,
    duplicate_token: bool,
    turn_tokens: bool = True,
) -> tuple[list[str], list[float], list[int]]:
    """Lays out the vocabulary.

    Args:
        script: Token texts of the script.
        extra_pieces: Extra normal pieces.
        byte_tokens: Whether to include the 256 byte tokens.
        duplicate_token: Whether to append a second entry with the text
            ``"user"``.

    Returns:
        Token texts, scores and token types, indexed by id.
    """
    entries = _gemma_head(turn_tokens)
    if byte_tokens:
        entries += _byte_tokens()
    texts = [text for text, _ in entries]
    types = [int(kind) for _, kind in entries]
    scores = [0.0] * len(texts)
    known = set(texts)

    declared = [piece for piece in (*BASE_PIECES, *script, *extra_pieces) if piece not in known]
    helpers = [prefix for piece in declared for prefix in _prefix_pieces(piece)]
    for piece in [*declared, *helpers]:
        if piece in known:
            continue
        known.add(piece)
        texts.append(piece)
        types.append(int(gguf.TokenType.NORMAL))
        # Longer pieces get higher scores, so merging prefers them.
        scores.append(float(len(piece)))

    if duplicate_token:
        texts.append("user")
        types.append(int(gguf.TokenType.NORMAL))
        scores.append(float(len("user")))
    return texts, scores, types


def _ffn_weights(
    successor_ids: dict[int, int], n_vocab: int, d_model: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Builds the first block's FFN that maps each token to its successor.

    There is one hidden unit per token with a defined successor, plus one
    default unit that fires for every other token and points at ``<eos>``.

    Args:
        successor_ids: Successor id by token id.
        n_vocab: Vocabulary size.
        d_model: Embedding width.

    Returns:
        ``(gate, up, down)`` in numpy layout: gate and up are
        ``(n_ff, d_model)``, down is ``(d_model, n_ff)``.
    """
    n_ff = len(successor_ids) + 1
    gate = np.zeros((n_ff, d_model), dtype=np.float32)
    up = np.zeros((n_ff, d_model), dtype=np.float32)
    down = np.zeros((d_model, n_ff), dtype=np.float32)
    for unit, (token, successor) in enumerate(sorted(successor_ids.items())):
        gate[unit, token] = 1.0
        up[unit, token] = 1.0
        down[successor, unit] = 1.0
    default = n_ff - 1
    gate[default, :n_vocab] = 1.0
    gate[default, list(successor_ids)] = -1.0  # GELU(-sqrt(d)) is 0: silent.
    up[default, :n_vocab] = 1.0
    down[EOS_ID, default] = 1.0
    return gate, up, down


def _add_hparams(
    writer: gguf.GGUFWriter,
    d_model: int,
    *,
    n_ff: int,
    context_length: int,
    heads: tuple[int, int, int] = (_N_HEAD, _N_HEAD_KV, _HEAD_DIM),
    name: str = "tinygemma2",
) -> None:
    """Writes the ``gemma2`` hyperparameters other than soft-capping.

    Args:
        writer: The GGUF writer.
        d_model: Embedding width.
        n_ff: FFN hidden width.
        context_length: Value of ``gemma2.context_length``.
        name: Value of ``general.name``.
    """
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(context_length)
    writer.add_embedding_length(d_model)
    writer.add_block_count(_N_LAYERS)
    writer.add_feed_forward_length(n_ff)
    n_head, n_head_kv, head_dim = heads
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_sliding_window(min(_SLIDING_WINDOW, context_length))


def _add_tokenizer(
    writer: gguf.GGUFWriter, texts: list[str], scores: list[float], types: list[int]
) -> None:
    """Writes the SentencePiece (``llama``) tokenizer metadata.

    Args:
        writer: The GGUF writer.
        texts: Token texts by id.
        scores: Token scores by id.
        types: Token types by id.
    """
    writer.add_tokenizer_model("llama")
    writer.add_token_list(texts)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_pad_token_id(PAD_ID)
    if hasattr(writer, "add_eot_token_id"):
        writer.add_eot_token_id(END_OF_TURN_ID)
    writer.add_add_bos_token(value=True)
    writer.add_add_eos_token(value=False)
    writer.add_add_space_prefix(value=False)


def _add_tensors(
    writer: gguf.GGUFWriter,
    n_vocab: int,
    d_model: int,
    ffn: tuple[np.ndarray, np.ndarray, np.ndarray],
    heads: tuple[int, int, int] = (_N_HEAD, _N_HEAD_KV, _HEAD_DIM),
) -> None:
    """Writes the weights: one-hot embeddings, zero attention, successor FFN.

    Args:
        writer: The GGUF writer.
        n_vocab: Vocabulary size.
        d_model: Embedding width.
        ffn: The first block's ``(gate, up, down)`` from :func:`_ffn_weights`.
    """
    n_head, n_head_kv, head_dim = heads
    n_q = n_head * head_dim
    n_kv = n_head_kv * head_dim

    def norm(value: float = 1.0) -> np.ndarray:
        # Gemma GGUFs store norm weights with the +1 folded in: 1.0 is identity.
        return np.full(d_model, value, dtype=np.float32)

    def zeros(rows: int, cols: int) -> np.ndarray:
        return np.zeros((rows, cols), dtype=np.float16)

    embedding = np.zeros((n_vocab, d_model), dtype=np.float16)
    embedding[np.arange(n_vocab), np.arange(n_vocab)] = 1.0
    writer.add_tensor("token_embd.weight", embedding)  # tied with the output head
    writer.add_tensor("output_norm.weight", norm())
    for block in range(_N_LAYERS):
        first = block == 0
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", norm())
        writer.add_tensor(f"{prefix}.attn_q.weight", zeros(n_q, d_model))
        writer.add_tensor(f"{prefix}.attn_k.weight", zeros(n_kv, d_model))
        writer.add_tensor(f"{prefix}.attn_v.weight", zeros(n_kv, d_model))
        writer.add_tensor(f"{prefix}.attn_output.weight", zeros(d_model, n_q))
        writer.add_tensor(f"{prefix}.post_attention_norm.weight", norm())
        writer.add_tensor(f"{prefix}.ffn_norm.weight", norm())
        for name, weight in zip(("ffn_gate", "ffn_up", "ffn_down"), ffn, strict=True):
            tensor = weight if first else np.zeros_like(weight)
            writer.add_tensor(f"{prefix}.{name}.weight", tensor.astype(np.float16))
        gain = _SUCCESSOR_GAIN if first else 1.0
        writer.add_tensor(f"{prefix}.post_ffw_norm.weight", norm(gain))


def build_tiny_gemma2(
    path: str | Path,
    script: Sequence[str],
    *,
    context_length: int = 1024,
    softcap: bool = True,
    duplicate_token: bool = False,
    byte_tokens: bool = True,
    extra_pieces: Sequence[str] = (),
    turn_tokens: bool = True,
    heads: tuple[int, int, int] = (_N_HEAD, _N_HEAD_KV, _HEAD_DIM),
    name: str = "tinygemma2",
    metadata: Mapping[str, str] | None = None,
) -> TinyModel:
    r"""Writes a tiny deterministic ``gemma2`` GGUF whose greedy output is a script.

    The prompt built by a Gemma chat client ends with the piece ``"model\n"``
    (after ``<start_of_turn>``). Greedy decoding then yields ``script[0]``,
    ``script[1]``, ... The model is a Markov chain on single tokens: the
    successor of ``script[k]`` is ``script[k + 1]``, the successor of the last
    token is itself unless the script already defines one (so a script may
    loop back, e.g. ``<end_of_turn>`` -> ``"\n"`` -> ``<start_of_turn>`` ->
    ``"user\n"`` -> ... forever), and any other token is followed by
    ``<eos>``. Attention weights are zero, so the context does not matter.

    The vocabulary holds Gemma 2's ids 0..107, the byte tokens ``<0x00>`` ..
    ``<0xFF>`` (ids 108..363, unless ``byte_tokens`` is False), then the normal
    pieces ``"\n"``, ``"user"``, ``"model"``, ``"user\n"``, ``"model\n"``,
    the script's pieces, ``extra_pieces``, and finally every prefix of two or
    more characters of those pieces (so that llama.cpp's SentencePiece merges
    can reach them when tokenizing text). Script entries that name an existing
    token (``"<end_of_turn>"``, ``"<0xE4>"``) use it; any other entry becomes a
    normal piece. Spaces must be spelled ``"▁"`` (U+2581), as in SentencePiece.

    Args:
        path: Where to write the GGUF file; it is overwritten.
        script: Token texts that greedy decoding produces after ``"model\n"``.
        context_length: Value of ``gemma2.context_length``.
        softcap: If False, omit ``gemma2.attn_logit_softcapping`` and
            ``gemma2.final_logit_softcapping`` (like GGUFs made before July
            2024). Greedy output is unchanged.
        duplicate_token: If True, append a second vocabulary entry whose text
            is ``"user"``. llama.cpp then aborts the process with a
            ``GGML_ASSERT`` when loading the file, so never load it in-process.
        byte_tokens: If False, omit the 256 byte tokens; llama.cpp then cannot
            tokenize text containing characters outside the vocabulary.
        extra_pieces: Extra normal pieces to add to the vocabulary.
        turn_tokens: If False, the vocabulary has no ``<start_of_turn>`` or
            ``<end_of_turn>`` (ids 106/107 are unused tokens): not a chat model.
        heads: ``(n_head, n_head_kv, head_dim)``. Impossible shapes (an odd head_dim,
            n_head not a multiple of n_head_kv) load, then make llama.cpp abort the
            process when it builds or runs the graph.
        name: Value of ``general.name`` (any text: the escape tests put hostile
            sequences there).
        metadata: Extra string metadata, key to value (hostile keys, or a
            ``tokenizer.chat_template`` that llama-cpp-python prints while loading).

    Returns:
        The written model's path and vocabulary.

    Raises:
        ValueError: If the script is empty, contains an empty entry, names a
            byte token while ``byte_tokens`` is False, or is inconsistent (a
            token followed by different tokens at different places).
    """
    _validate_script(script, byte_tokens=byte_tokens)
    chain = _successors(script)
    texts, scores, types = _build_vocab(
        script,
        extra_pieces,
        byte_tokens=byte_tokens,
        duplicate_token=duplicate_token,
        turn_tokens=turn_tokens,
    )
    model = TinyModel(path=Path(path), tokens=tuple(texts))
    successor_ids = {
        model.id(token): model.id(successor) for token, (successor, _) in chain.items()
    }

    n_vocab = len(texts)
    d_model = math.ceil(n_vocab / 32) * 32
    ffn = _ffn_weights(successor_ids, n_vocab, d_model)

    writer = gguf.GGUFWriter(model.path, "gemma2")
    _add_hparams(
        writer,
        d_model,
        n_ff=ffn[0].shape[0],
        context_length=context_length,
        heads=heads,
        name=name,
    )
    if softcap:
        writer.add_attn_logit_softcapping(_ATTN_SOFTCAP)
        writer.add_final_logit_softcapping(_FINAL_SOFTCAP)
    _add_tokenizer(writer, texts, scores, types)
    for key, value in (metadata or {}).items():
        writer.add_string(key, value)
    _add_tensors(writer, n_vocab, d_model, ffn, heads)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model
