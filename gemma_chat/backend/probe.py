"""Read a GGUF model's metadata and test-run it with llama.cpp in a child process.

A malformed GGUF (duplicate vocabulary entries, a missing byte-token table, impossible
attention shapes, ...) can hit a ``GGML_ASSERT`` inside llama.cpp, which aborts the whole
process: no Python exception can be caught, and a TUI dies with the terminal left broken.
So the first look at a model happens here, in a child:

1. llama.cpp loads the whole model on the CPU with a small context: its own reader
   parses every key and tensor header, checks that tensor data lies within the file,
   loads the vocabulary and the weights, and builds the compute graph;
2. text that needs byte fallback is tokenized, and a few tokens are decoded;
3. the metadata is collected, and the file's sha256 is computed (the load just read it,
   so it comes from the page cache); the history records it with every reply.

It prints what it found as one JSON object. Run as
``python -m gemma_chat.backend.probe PATH [--no-flash-attn]``. Exit 0 with the metadata,
exit 1 with ``{"error": ...}`` for a failure llama.cpp reported; anything else is a crash.
The parent caches the verdict per file version, so a model is probed once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gemma_chat.files import sha256_file

# Characters outside most vocabularies force byte fallback: a model without byte tokens
# aborts here rather than later on the user's text.
PROBE_TEXT = "Hi 世界 🦙 ñ \x01\x7f\u200b<end_of_turn>"


def probe(path: str, flash_attn: bool = True) -> dict[str, object]:
    """Check ``path`` with llama.cpp (see the module docstring) and describe the model."""
    import llama_cpp

    from gemma_chat.backend import llama_log
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.chat.tokenizer import END_OF_TURN, START_OF_TURN

    llama_log.install(debug=False)
    # One load does it all: llama.cpp reads the vocabulary and every header first, then
    # the weights, and building the context builds the compute graph.
    backend = LlamaBackend(
        Path(path),
        n_ctx=256,
        offload=OffloadPlan(0, "cpu"),
        flash_attn=flash_attn,
        keep_stderr=True,
    )
    try:
        vocab = backend.tokenizer
        meta: dict[str, str] = backend.llama.metadata
        backend.llama.eval(vocab.tokenize(PROBE_TEXT)[:8])
        arch = meta.get("general.architecture", "")
        return {
            "architecture": arch,
            "name": meta.get("general.name"),
            "basename": meta.get("general.basename"),
            "finetune": meta.get("general.finetune"),
            "chat_template": "tokenizer.chat_template" in meta,
            "size_label": meta.get("general.size_label"),
            "file_type": _int(meta.get("general.file_type")),
            "context_length": _int(meta.get(f"{arch}.context_length")),
            "block_count": _int(meta.get(f"{arch}.block_count")),
            "n_vocab": vocab.size,
            "start_of_turn": vocab.control_id(START_OF_TURN),
            "end_of_turn": vocab.control_id(END_OF_TURN),
            "attn_logit_softcapping": f"{arch}.attn_logit_softcapping" in meta,
            "final_logit_softcapping": f"{arch}.final_logit_softcapping" in meta,
            "quantization": _quantization(_int(meta.get("general.file_type"))),
            "llama_cpp_version": llama_cpp.__version__,
            "sha256": sha256_file(path),
        }
    finally:
        backend.close()


def _quantization(file_type: int | None) -> str | None:
    """The quantization name (``Q4_K_M``) from ``general.file_type``, via the gguf package."""
    if file_type is None:
        return None
    try:
        from gguf import LlamaFileType

        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def main() -> int:
    """Entry point of the child process."""
    from gemma_chat.errors import ModelError

    try:
        result = probe(sys.argv[1], flash_attn="--no-flash-attn" not in sys.argv[2:])
    except ModelError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
