"""The Gemma chat template rendered as TEXT, for servers that take a prompt string.

A remote OpenAI-compatible server (llama-server, vLLM, Ollama) takes the prompt as text
and tokenizes it itself, usually with special-token parsing on: the string
``<end_of_turn>`` in the prompt becomes the control token. The scaffolding must do so,
but text a person typed, pasted or piped in must not, or they could forge turns. So
every control-token name inside user, system and model text is *neutralised*: a U+2060
WORD JOINER is put right after its opening ``<`` (or ``[`` for ``[@BOS@]``). The word
joiner is invisible and has no meaning of its own, the text still reads the same to the
model, and no tokenizer can match the control token across it.

Which names: the server's vocabulary is not known here, so the rule is the set of names
Gemma vocabularies give their special tokens, by name and by shape:

* every CONTROL and UNKNOWN token of the Gemma 2 and Gemma 3 vocabularies as llama.cpp
  reports them: ``<pad>``, ``<eos>``, ``<bos>``, ``<unk>``, ``<mask>``, ``[@BOS@]``,
  ``</s>``, ``<start_of_turn>``, ``<end_of_turn>`` and ``<unused0>`` ... ``<unusedN>``
  (tests derive this list from the real vocabularies and check each one);
* the shapes newer Gemma models name their markers with: ``<start_...>`` and
  ``<end_...>`` (``<start_of_image>``, ``<end_of_audio>``, FunctionGemma's
  ``<start_function_call>``), ``<..._token>`` (``<image_soft_token>``), and
  ``<escape>``; plus ``<__media__>``, where llama-server's multimodal path splits a
  prompt for images.

Why this is safe, and not every ``<word>``: a tokenizer turns text into a special token
only on an exact match of its name, and the word joiner breaks every name above. The
other ``<...>`` names in Gemma vocabularies (``<div>``, ``<table>``, ``<h1>``...) are
USER_DEFINED tokens, which llama.cpp and Hugging Face tokenizers match with special
parsing on *or off*: the server gives them the ids the local path gives them, so they
carry no injection and are sent unchanged. Neutralising every ``<word>`` would instead
put invisible characters into code (``vector<int>``, ``<size_t>``) that a model may copy
into its answer.

The layout is :class:`gemma_chat.chat.template.GemmaTemplate`'s, character for character::

    <bos><start_of_turn>user
    {system}\\n\\n{user}<end_of_turn>
    <start_of_turn>model
    {model, trimmed}<end_of_turn>
    <start_of_turn>user
    {user}<end_of_turn>
    <start_of_turn>model

except that ``<bos>`` is left out of what is sent by default: every server we target
(llama-server, llama-cpp-python's server, vLLM) adds BOS itself when it tokenizes a
completions prompt, and a second BOS degrades Gemma.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gemma_chat.chat.conversation import Role, Turn
from gemma_chat.chat.template import fold_system

WORD_JOINER = "\u2060"
"""Inserted after the ``<`` of a control-token name found in text."""

BOS_TEXT = "<bos>"
START_TEXT = "<start_of_turn>"
END_TEXT = "<end_of_turn>"
EOS_TEXT = "<eos>"

STOP_STRINGS = (END_TEXT, START_TEXT, EOS_TEXT)
"""Stop strings sent with every remote request: a reply ends at any turn marker."""

_NAMES = (
    r"bos|eos|pad|unk|mask|escape|__media__|unused\d+"
    r"|(?:start|end)_[a-z0-9_]+"  # <start_of_turn>, <end_of_image>, <start_function_call>
    r"|[a-z0-9_]+_token"  # <image_soft_token>, <audio_soft_token>
)
_CONTROL = re.compile(rf"(<)(?=(?:{_NAMES})>|/s>)|(\[)(?=@BOS@\])")


def neutralise(text: str) -> str:
    """Make every Gemma control-token name in ``text`` plain text.

    A WORD JOINER goes right after the ``<`` (or ``[``) of each name, so a server that
    parses special tokens in the prompt sees ordinary characters.
    """
    return _CONTROL.sub(lambda m: (m.group(1) or m.group(2)) + WORD_JOINER, text)


def turn_text(turn: Turn, system: str | None = None) -> str:
    """One whole turn, from ``<start_of_turn>`` to the newline after ``<end_of_turn>``.

    Args:
        turn: The turn.
        system: A system prompt to fold in (only for the first user turn).
    """
    if turn.role is Role.USER:
        body = "user\n" + neutralise(fold_system(system, turn.text))
    else:
        body = "model\n" + neutralise(turn.text.strip())
    return f"{START_TEXT}{body}{END_TEXT}\n"


def generation_prompt() -> str:
    """The text that opens the model's turn."""
    return f"{START_TEXT}model\n"


def render_text(turns: Sequence[Turn], system: str | None = None, *, bos: bool = False) -> str:
    """Render turns (the last one a user turn) plus the generation prompt, as text.

    Args:
        turns: Alternating turns starting with a user turn.
        system: The system prompt, folded into the first user turn.
        bos: Start with ``<bos>``, as :meth:`GemmaTemplate.render` does. Off for what is
            sent to a server, which adds BOS itself.
    """
    parts = [BOS_TEXT] if bos else []
    parts += [turn_text(turn, system if i == 0 else None) for i, turn in enumerate(turns)]
    parts.append(generation_prompt())
    return "".join(parts)


def chat_messages(turns: Sequence[Turn], system: str | None = None) -> list[dict[str, str]]:
    """The turns as OpenAI chat messages, for servers without a completions endpoint.

    Gemma has no system role, so the system prompt is folded into the first user
    message gemma-chat's way (``system + blank line + user``) instead of being sent as a
    ``system`` message the server's own template might drop or reject. Control-token
    names are neutralised here too: the server renders these messages with its own
    template, and some tokenize the result with special tokens on.
    """
    messages = []
    for index, turn in enumerate(turns):
        if turn.role is Role.USER:
            text = fold_system(system if index == 0 else None, turn.text)
            messages.append({"role": "user", "content": neutralise(text)})
        else:
            messages.append({"role": "assistant", "content": neutralise(turn.text.strip())})
    return messages
