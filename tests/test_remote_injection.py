"""Typed control-token names never become control tokens on the remote text path
(issue 18: "every special token on the remote text path", "injection over a real server").

The names come from the real vocabularies (the demo model's Gemma 3 vocabulary and the
tiny Gemma 2 one), not from a hand-written list: every token llama.cpp marks CONTROL,
UNKNOWN or USER_DEFINED, which are the ones its tokenizer can match in text. The check is
what a server that parses special tokens would do with the prompt: tokenize it with
``special=True`` and compare with the ids gemma-chat means, where only the template's own
markers are control tokens and every typed character is plain text.
"""

from __future__ import annotations

import json
import random
import urllib.request
from typing import Any

import llama_cpp
import pytest

from gemma_chat.backend.remote import OpenAIBackend
from gemma_chat.chat.conversation import Conversation, Role, Turn
from gemma_chat.chat.template_text import WORD_JOINER, chat_messages, neutralise, render_text
from gemma_chat.config.settings import Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone

_PARSED = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
)


def special_names(vocab: Any) -> list[str]:
    """Every token text the tokenizer can match in text as a special or user-defined
    token (whitespace-only ones, such as runs of newlines, are ordinary text)."""
    names = []
    for token in range(vocab.size):
        if llama_cpp.llama_vocab_get_attr(vocab._vocab, token) & _PARSED:
            text = vocab.token_text(token)
            if text.strip():
                names.append(text)
    return names


def is_control(vocab: Any, token: int) -> bool:
    attr = llama_cpp.llama_vocab_get_attr(vocab._vocab, token)
    return bool(attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN))


def typed(names: list[str]) -> str:
    """Text holding every name, alone and glued to letters and to each other."""
    return " ".join(names) + "\nx" + "y".join(names) + "z" + "".join(names)


def intended_ids(vocab: Any, text: str, system: str | None = None) -> list[int]:
    """The ids of ``render_text([user: text])`` as gemma-chat means them: the template's
    markers as control tokens, everything between them as plain text."""
    start, end = vocab.control_id("<start_of_turn>"), vocab.control_id("<end_of_turn>")
    body = render_text([Turn(Role.USER, text)], system)
    user = body.removeprefix("<start_of_turn>").split("<end_of_turn>")[0]
    return [
        start,
        *vocab.tokenize(user),
        end,
        *vocab.tokenize("\n"),
        start,
        *vocab.tokenize("model\n"),
    ]


@pytest.fixture(params=["demo", "tiny gemma2"])
def vocab(request: pytest.FixtureRequest) -> Any:
    if request.param == "demo":
        return request.getfixturevalue("demo_backend").tokenizer
    return request.getfixturevalue("tiny_backends")["runaway"].tokenizer


def test_the_vocabularies_hold_the_tokens_the_issue_names(vocab: Any) -> None:
    names = special_names(vocab)
    for name in ("<pad>", "<mask>", "<unk>", "<bos>", "<eos>", "<start_of_turn>"):
        assert name in names
    controls = [n for n in names if vocab.control_id(n) is not None]
    assert len(controls) >= 6  # the test below is not vacuous


def test_every_special_token_of_the_vocabulary_is_neutralised(vocab: Any) -> None:
    names = special_names(vocab)
    text = typed(names)
    prompt = render_text([Turn(Role.USER, text)], system=typed(names[:50]))
    as_parsed = vocab.tokenize_special(prompt)
    # Exactly the template's three markers are control tokens; each typed name is text.
    controls = [vocab.token_text(t) for t in as_parsed if is_control(vocab, t)]
    assert controls == ["<start_of_turn>", "<end_of_turn>", "<start_of_turn>"], sorted(
        set(controls)
    )[:20]
    assert as_parsed == intended_ids(vocab, text, typed(names[:50]))
    # The neutralised text reads the same (only word joiners were added).
    assert neutralise(text).replace(WORD_JOINER, "") == text


def test_model_turns_and_chat_messages_are_neutralised_too(vocab: Any) -> None:
    names = special_names(vocab)
    text = typed(names)
    turns = [Turn(Role.USER, "hi"), Turn(Role.MODEL, text), Turn(Role.USER, text)]
    controls = [
        vocab.token_text(t)
        for t in vocab.tokenize_special(render_text(turns))
        if is_control(vocab, t)
    ]
    assert controls == ["<start_of_turn>", "<end_of_turn>"] * 3 + ["<start_of_turn>"]
    for message in chat_messages(turns, system=text):
        content = message["content"]
        assert vocab.tokenize_special(content) == vocab.tokenize(content)


@pytest.mark.parametrize(
    "name",
    [
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
        "<start_of_audio>",
        "<audio_soft_token>",
        "<start_function_call>",
        "<end_function_response>",
        "<escape>",
        "<__media__>",
        "</s>",
        "[@BOS@]",
        "<unused99999>",
    ],
)
def test_marker_shapes_of_other_gemma_vocabularies_are_neutralised(name: str) -> None:
    # The server's vocabulary is not known: names of the shapes Gemma gives its markers
    # are neutralised even when the two test vocabularies lack them.
    assert name not in neutralise(f"a{name}b")


@pytest.mark.parametrize(
    "text", ["<div>", "<table><tr><td>", "std::vector<int>", "<size_t>", "a < b > c", "<b>x</b>"]
)
def test_ordinary_tags_and_code_are_sent_unchanged(text: str) -> None:
    # User-defined tokens (HTML tags in Gemma vocabularies) tokenize the same with special
    # parsing on or off, and code must not gain invisible characters a model may copy.
    assert neutralise(text) == text


# ---------------------------------------------------------------- a real server


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


class RecordingBackend(OpenAIBackend):
    """The real backend, keeping the prompt it sent."""

    sent: list[str]

    def stream_text(self, prompt: str, **kwargs: Any):  # type: ignore[override]
        self.sent.append(prompt)
        return super().stream_text(prompt, **kwargs)


def ask_over_server(url: str, model: str, text: str) -> tuple[str, ReplyDone]:
    backend = RecordingBackend.connect(url, model=model)
    backend.sent = []
    try:
        conversation = Conversation()
        conversation.add_user(text)
        engine = Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=4))
        done = list(engine.stream(conversation))[-1]
        assert isinstance(done, ReplyDone)
    finally:
        backend.close()
    (prompt,) = backend.sent
    return prompt, done


def check_server_tokens(url: str, model: str, vocab: Any, prompt: str, text: str) -> None:
    """The server's own tokenizer (``/extras/tokenize``, special tokens on, as its
    completions path) gives exactly the intended ids: no typed control token."""
    root = url.removesuffix("/v1")
    tokens = post(f"{root}/extras/tokenize", {"input": prompt, "model": model})["tokens"]
    assert tokens[0] == vocab.bos_id
    found = {vocab.token_text(t) for t in tokens[1:] if is_control(vocab, t)}
    assert found == {"<start_of_turn>", "<end_of_turn>"}, sorted(found)[:20]
    assert tokens[1:] == intended_ids(vocab, text)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo", "runaway"])
def test_typed_markers_never_arrive_as_control_tokens(
    openai_server: str, demo_backend, tiny_backends, model: str
) -> None:
    vocab = demo_backend.tokenizer if model == "demo" else tiny_backends[model].tokenizer
    names = special_names(vocab)
    # The full list, through the server's tokenizer (the demo vocabulary's 6,000 unused
    # tokens do not fit one 2048-token prompt, but tokenizing has no context limit).
    full = typed(names)
    check_server_tokens(openai_server, model, vocab, render_text([Turn(Role.USER, full)]), full)
    # A real reply through gemma-chat's own request: every named token, and a sample of
    # the unused ones that fits the server's context.
    named = [n for n in names if not n.startswith("<unused")]
    unused = [n for n in names if n.startswith("<unused")]
    sample = unused[:3] + unused[-3:] + random.Random(5).sample(unused, min(20, len(unused)))
    text = " ".join(named + sample)
    prompt, done = ask_over_server(openai_server, model, text)
    assert done.error is None
    assert prompt == render_text([Turn(Role.USER, text)])
    check_server_tokens(openai_server, model, vocab, prompt, text)
    # What the completions path evaluated: as many prompt tokens as intended, BOS included.
    usage = post(
        f"{openai_server}/completions",
        {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0},
    )["usage"]
    assert usage["prompt_tokens"] == 1 + len(intended_ids(vocab, text))
