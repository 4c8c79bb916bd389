"""A model's shape, as the memory planner needs it, from GGUF metadata alone.

:class:`ModelShape` is built from a plain dict of GGUF key/values plus each tensor's
name and size in bytes, so it works with any reader: :meth:`ModelShape.from_meta` takes
any object with ``.kv`` and ``.tensors`` (:mod:`gemma_chat.models.gguf_meta`'s ``GGUFMeta``, or a
test's adapter over the ``gguf`` package's ``GGUFReader``). Pure: no file or llama.cpp
access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# llama.cpp's sliding-window rule per architecture (``models/<arch>.cpp`` in the
# llama.cpp that llama-cpp-python 0.3.36 vendors): (default window, layer pattern).
# With a pattern of n, layer il slides when ``il % n < n - 1``: Gemma 2 alternates
# local/global starting with a local layer; Gemma 3 has five local layers per global one.
# Gemma 2's window defaults to 4096 when the key is missing; Gemma 3 slides only when
# the file sets ``gemma3.attention.sliding_window``.
SWA_RULES: dict[str, tuple[int, int]] = {"gemma2": (4096, 2), "gemma3": (0, 6)}

# general.file_type (llama.cpp's llama_ftype) -> the name users know.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip

_BLOCK = re.compile(r"^blk\.(\d+)\.")


MAX_LAYERS = 512
"""llama.cpp's ``LLAMA_MAX_LAYERS``: a file claiming more is malformed."""


class ShapeError(ValueError):
    """The metadata lacks what the planner needs (not a transformer GGUF, or damaged)."""


@dataclass(frozen=True)
class ModelShape:
    """Everything the memory planner needs to know about a model.

    Attributes:
        architecture: ``general.architecture`` (``gemma2``, ``gemma3``, ...).
        n_layer: Repeating layers (``{arch}.block_count``).
        n_embd: Embedding width.
        n_vocab: Vocabulary size (rows of the token embedding).
        n_ff: Widest FFN hidden size over the layers.
        n_head: Attention heads, per layer.
        n_head_kv: KV heads, per layer (GQA).
        head_dim_k: Width of one key head.
        head_dim_v: Width of one value head.
        swa_layers: Per layer, whether it uses sliding-window attention.
        n_swa: The sliding window in tokens (0: none).
        layer_bytes: Bytes of each layer's ``blk.N.*`` tensors.
        embd_bytes: Bytes of ``token_embd.weight`` (llama.cpp keeps it on the CPU).
        output_bytes: Bytes of the other non-layer tensors (the output head and norm),
            which go to the GPU with the first offloaded "layer".
        tied_output: No ``output.weight``: the output head is the token embedding, which
            llama.cpp copies to the GPU when the output layer is offloaded.
        context_length: The trained context, if the file says.
        size_label: ``general.size_label`` (``27B``), if set.
        file_type: ``general.file_type``, if set.
    """

    architecture: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ff: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]
    head_dim_k: int
    head_dim_v: int
    swa_layers: tuple[bool, ...]
    n_swa: int
    layer_bytes: tuple[int, ...]
    embd_bytes: int
    output_bytes: int
    tied_output: bool
    context_length: int | None = None
    size_label: str | None = None
    file_type: int | None = None

    @property
    def weights_bytes(self) -> int:
        """All the weights, held once (on the CPU a tied output head shares the embedding)."""
        return sum(self.layer_bytes) + self.embd_bytes + self.output_bytes

    @property
    def quantization(self) -> str | None:
        """The file type's name (``Q4_K_M``), if known."""
        return FILE_TYPES.get(self.file_type) if self.file_type is not None else None

    @property
    def label(self) -> str:
        """How a verdict names the model: ``27B Q4_K_M``, or the architecture."""
        parts = [self.size_label or self.architecture, self.quantization]
        return " ".join(part for part in parts if part)

    @classmethod
    def from_meta(cls, meta: Any) -> ModelShape:
        """Build from any reader's result with ``.kv`` (a dict) and ``.tensors``.

        Each tensor is an object with ``.name`` and ``.n_bytes`` (and optionally
        ``.shape``, ggml order), or a ``(name, n_bytes[, shape])`` tuple.

        Raises:
            ShapeError: A needed key is missing or malformed.
        """
        tensors = []
        for tensor in meta.tensors:
            if isinstance(tensor, tuple):
                tensors.append((tensor[0], tensor[1], tensor[2] if len(tensor) > 2 else None))
            else:
                tensors.append((tensor.name, tensor.n_bytes, getattr(tensor, "shape", None)))
        return cls.from_kv(meta.kv, tensors)

    @classmethod
    def from_kv(
        cls, kv: Mapping[str, Any], tensors: Iterable[tuple[str, int] | tuple[str, int, Any]]
    ) -> ModelShape:
        """Build from GGUF key/values and ``(name, n_bytes[, shape])`` per tensor.

        Raises:
            ShapeError: A needed key is missing or malformed.
        """
        arch = kv.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise ShapeError("the metadata has no general.architecture")
        n_layer = _int(kv, f"{arch}.block_count")
        if not 1 <= n_layer <= MAX_LAYERS:
            raise ShapeError(f"{arch}.block_count is {n_layer}; llama.cpp allows 1 to {MAX_LAYERS}")
        n_embd = _int(kv, f"{arch}.embedding_length")
        n_head = _per_layer(kv, f"{arch}.attention.head_count", n_layer)
        n_head_kv = _per_layer(kv, f"{arch}.attention.head_count_kv", n_layer, n_head)
        default_dim = n_embd // max(n_head) if max(n_head) else 0
        head_dim_k = _int(kv, f"{arch}.attention.key_length", default_dim)
        head_dim_v = _int(kv, f"{arch}.attention.value_length", head_dim_k)
        n_ff = max(_per_layer(kv, f"{arch}.feed_forward_length", n_layer, (0,) * n_layer))
        n_swa, swa_layers = _sliding_window(kv, arch, n_layer)

        layer_bytes = [0] * n_layer
        embd_bytes = output_bytes = 0
        n_vocab = _int(kv, f"{arch}.vocab_size", 0)
        tied = True
        for name, n_bytes, *rest in tensors:
            shape = rest[0] if rest else None
            match = _BLOCK.match(name)
            if match and int(match.group(1)) < n_layer:
                layer_bytes[int(match.group(1))] += int(n_bytes)
            elif name == "token_embd.weight":
                embd_bytes += int(n_bytes)
                if not n_vocab and shape is not None and len(shape) == 2:
                    # Whichever dimension is not the embedding width (readers differ on
                    # ggml versus numpy order).
                    n_vocab = int(shape[1] if int(shape[0]) == n_embd else shape[0])
            else:
                output_bytes += int(n_bytes)
                tied = tied and name != "output.weight"
        if not n_vocab:
            tokens = kv.get("tokenizer.ggml.tokens")
            # A list, or a reader's summary of a long array (with its length as ``n``).
            n_vocab = len(tokens) if isinstance(tokens, Sequence) else getattr(tokens, "n", 0)
        context = kv.get(f"{arch}.context_length")
        file_type = kv.get("general.file_type")
        label = kv.get("general.size_label")
        return cls(
            architecture=arch,
            n_layer=n_layer,
            n_embd=n_embd,
            n_vocab=n_vocab,
            n_ff=n_ff,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim_k=head_dim_k,
            head_dim_v=head_dim_v,
            swa_layers=swa_layers,
            n_swa=n_swa,
            layer_bytes=tuple(layer_bytes),
            embd_bytes=embd_bytes,
            output_bytes=output_bytes,
            tied_output=tied,
            context_length=context if isinstance(context, int) else None,
            size_label=label if isinstance(label, str) and label else None,
            file_type=file_type if isinstance(file_type, int) else None,
        )


def _int(kv: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = kv.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        if value is None:
            raise ShapeError(f"the metadata has no {key}")
        raise ShapeError(f"{key} is not a non-negative integer: {value!r}")
    return value


def _per_layer(
    kv: Mapping[str, Any], key: str, n_layer: int, default: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """A key that is one number for every layer, or an array with one per layer."""
    value = kv.get(key)
    if value is None:
        if default is None:
            raise ShapeError(f"the metadata has no {key}")
        return default
    if _is_int(value):
        return (value,) * n_layer
    is_array = isinstance(value, Sequence) and not isinstance(value, str)
    if is_array and len(value) == n_layer and all(_is_int(v) for v in value):
        return tuple(value)
    raise ShapeError(f"{key} is neither a number nor one number per layer")


def _sliding_window(kv: Mapping[str, Any], arch: str, n_layer: int) -> tuple[int, tuple[bool, ...]]:
    """The window and which layers slide, by llama.cpp's rule for the architecture.

    ``{arch}.attention.sliding_window_pattern`` wins when present: an array of per-layer
    flags, or a period n (layer il slides when ``il % n < n - 1``).
    """
    default_window, pattern = SWA_RULES.get(arch, (0, 0))
    window = kv.get(f"{arch}.attention.sliding_window", default_window)
    if not isinstance(window, int) or window <= 0:
        return 0, (False,) * n_layer
    flags = kv.get(f"{arch}.attention.sliding_window_pattern", pattern)
    if isinstance(flags, Sequence) and not isinstance(flags, str) and len(flags) == n_layer:
        return window, tuple(bool(flag) for flag in flags)
    if isinstance(flags, int) and not isinstance(flags, bool) and flags > 0:
        return window, tuple(il % flags < flags - 1 for il in range(n_layer))
    return 0, (False,) * n_layer  # an architecture llama.cpp does not slide by default


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
