"""The one reply loop: the same stop case gives the same reply through a token backend
(sampled ids) and a text backend (a server's chunks), on the demo model's real vocabulary."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Literal

import pytest

from gemma_chat.backend.base import BackendInfo, TextBackend, TokenBackend
from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.backend.sse import TextChunk
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.chat.tokenizer import Tokenizer
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.generation.sources import TextSource, TokenSource, source_for


class ScriptedServer:
    """A text backend streaming a scripted reply one chunk per token of it, as servers
    do, then a finish reason (``stop``: the server ended the turn)."""

    def __init__(self, tokenizer: Tokenizer, reply: str, n_ctx: int = 4096) -> None:
        self._chunks = [tokenizer.piece(t).decode() for t in tokenizer.tokenize(reply)]
        self.info = BackendInfo(
            "scripted", "http://scripted", "remote", n_ctx, n_ctx, "remote", 0, 0
        )
        self.api_path = "completions"
        self.prompts: list[str] = []

    @property
    def is_remote(self) -> Literal[True]:
        return True

    def stream_text(
        self,
        prompt: str,
        *,
        messages: list[dict[str, str]],
        sampling: Sampling,
        seed: int,
        stop: list[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[TextChunk]:
        self.prompts.append(prompt)
        for chunk in self._chunks:
            yield TextChunk(chunk)
        yield TextChunk("", "stop", None)

    def close(self) -> None:
        pass


def reply(engine: Engine, cancel: threading.Event | None = None) -> tuple[str, ReplyDone]:
    conversation = Conversation()
    conversation.add_user("Tell me a story")
    shown, done = [], None
    for event in engine.stream(conversation, cancel):
        if isinstance(event, TextDelta):
            shown.append(event.text)
        else:
            done = event
    assert isinstance(done, ReplyDone)
    return "".join(shown), done


STORY = "Once upon a time there was a cat who lived in a small house by the sea."
CASES = {
    # The backend ends the turn: <end_of_turn> after the text / the server's "stop".
    "end_of_turn": (STORY, {}, StopReason.END_OF_TURN, STORY),
    # A marker spelled as plain text: stopped there, the marker never shown.
    "marker_as_text": (
        "The end.<end_of_turn>\n<start_of_turn>user\nTell me another",
        {},
        StopReason.END_OF_TURN,
        "The end.",
    ),
    "max_tokens": (STORY, {"max_tokens": 5}, StopReason.MAX_TOKENS, None),
    "repetition": ("cat\n" * 60, {}, StopReason.REPETITION, None),
    "cancelled": (STORY, {"cancel": True}, StopReason.CANCELLED, ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_token_source_and_a_text_source_stop_alike(vocab, case: str) -> None:
    text, options, reason, expected = CASES[case]
    sampling = Sampling(max_tokens=options.get("max_tokens", 200), seed=7)
    guard = RepeatGuard(min_tokens=12, min_repeats=3)
    results = []
    for backend in (ScriptedBackend(vocab, [text]), ScriptedServer(vocab, text)):
        cancel = threading.Event()
        if options.get("cancel"):
            cancel.set()
        shown, done = reply(Engine(backend, sampling, guard), cancel)
        assert shown == done.text
        results.append((done.text, done.stop_reason, done.stats.completion_tokens, done.error))
    token_result, text_result = results
    assert token_result == text_result
    assert token_result[1] is reason
    if expected is not None:
        assert token_result[0] == expected
    if reason is StopReason.MAX_TOKENS:
        assert token_result[2] == 5


def test_the_source_follows_is_remote(vocab) -> None:
    conversation = Conversation()
    conversation.add_user("Hi")
    local, server = ScriptedBackend(vocab, ["Hi."]), ScriptedServer(vocab, "Hi.")
    # Both satisfy their declared protocol; the kind is the backend's own answer.
    token_backend: TokenBackend = local
    text_backend: TextBackend = server
    assert not token_backend.is_remote and text_backend.is_remote
    assert isinstance(source_for(local, conversation, Sampling()), TokenSource)
    assert isinstance(source_for(server, conversation, Sampling()), TextSource)
    assert Engine(server).template is None and Engine(local).template is not None
