"""Whether a model is a *base* (pretrained) model or an *instruction-tuned* one, from what
its GGUF file says about itself.

A base model continues text rather than answering it ("2+2=2+12=6"), so the app and
``doctor`` say so and point at a chat model. The decision, first rule that applies:

1. ``general.finetune`` (llama.cpp's converter writes ``it``, ``instruct``, ``chat``... for
   a fine-tuned model, ``pt`` or ``base`` for a pretrained one);
2. the words of ``general.name``, the file name and ``general.basename``: ``it``,
   ``instruct``, ``chat``, ``sft``, ``rlhf``, ``dpo`` mean instruction-tuned; ``pt``,
   ``base``, ``pretrained`` mean base (Google names its models ``gemma-2-9b-it`` and
   ``gemma-2-9b``/``-pt``, and quantizers keep those names);
3. a chat template (``tokenizer.chat_template``) means instruction-tuned;
4. otherwise, with the metadata read: base (nothing marks it as tuned for chat);
5. without metadata (a file that could not be read, a model on a server that names it
   with none of these words): unknown.

Core code: no Textual, no llama.cpp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["base", "instruct", "unknown"]
"""The three answers (the ``models`` TYPE column)."""

INSTRUCT_WORDS = frozenset({"it", "instruct", "instruction", "chat", "sft", "rlhf", "dpo"})
"""Words of a name that mark an instruction-tuned model."""
BASE_WORDS = frozenset({"pt", "base", "pretrained", "pretrain"})
"""Words of a name that mark a base (pretrained) model."""

PULL_HINT = "gemma-chat pull gemma2:2b"
"""The command that gets a small instruction-tuned Gemma 2 model."""
PULLED_NAME = "gemma-2-2b-it-Q4_K_M"
"""The short name of the model that :data:`PULL_HINT` downloads."""


@dataclass(frozen=True)
class ModelKind:
    """A model's kind and why.

    Attributes:
        kind: ``base``, ``instruct`` or ``unknown``.
        reason: What decided it, in a few words ("its name says it", "no chat template").
    """

    kind: Kind
    reason: str

    @property
    def label(self) -> str:
        """Words for people: "base model", "instruction-tuned model", "model"."""
        return {"base": "base model", "instruct": "instruction-tuned model"}.get(self.kind, "model")


def _words(text: str | None) -> set[str]:
    """The lower-case words of a name (``gemma-2-9b-it-Q4_K_M`` -> gemma, 2, 9b, it, q4...)."""
    if not text:
        return set()
    return set(re.split(r"[^0-9a-z]+", text.casefold())) - {""}


def _from_words(words: set[str]) -> Kind | None:
    instruct, base = bool(words & INSTRUCT_WORDS), bool(words & BASE_WORDS)
    if instruct != base:
        return "instruct" if instruct else "base"
    return None


def classify(
    *,
    finetune: str | None = None,
    names: tuple[str | None, ...] = (),
    chat_template: bool | None = None,
    metadata_read: bool = True,
) -> ModelKind:
    """Decide a model's kind (the rules are in the module docstring).

    Args:
        finetune: ``general.finetune``, if the file has it.
        names: ``general.name``, the file name, ``general.basename`` (or a server's model
            id), in that order; None entries are skipped.
        chat_template: Whether the file has ``tokenizer.chat_template`` (None: not known).
        metadata_read: Whether the file's metadata was read at all.
    """
    kind = _from_words(_words(finetune))
    if kind is not None:
        return ModelKind(kind, f"general.finetune is {finetune!r}")
    for name in names:
        kind = _from_words(_words(name))
        if kind is not None:
            return ModelKind(kind, "its name says so")
    if chat_template:
        return ModelKind("instruct", "it has a chat template")
    if metadata_read and chat_template is not None:
        return ModelKind("base", "no chat template, and its name does not say instruction-tuned")
    return ModelKind("unknown", "its metadata does not say")


def kind_of_metadata(kv: Mapping[str, object], file_name: str | None) -> ModelKind:
    """The kind of a model from its GGUF key/values (:class:`GGUFMeta.kv`) and file name."""

    def text(key: str) -> str | None:
        value = kv.get(key)
        return value if isinstance(value, str) else None

    return classify(
        finetune=text("general.finetune"),
        names=(text("general.name"), file_name, text("general.basename")),
        chat_template="tokenizer.chat_template" in kv,
    )


def pull_hint(kinds: list[Kind]) -> str | None:
    """What to do when the models found are all base models (None otherwise, or when
    nothing was found: that has its own hint)."""
    if not kinds or any(kind != "base" for kind in kinds):
        return None
    return (
        "only base models found: they continue text rather than answer it. Get an "
        f"instruction-tuned one with '{PULL_HINT}', then use it with --model {PULLED_NAME}"
    )
