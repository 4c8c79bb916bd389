"""The real Gemma 3 270M demo model: its chat-prompt loops and non-Latin text."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import TextDelta


def test_repetition_guard_stops_the_demo_models_loop(demo_backend) -> None:
    engine = Engine(demo_backend, Sampling(temperature=0.0, seed=1, max_tokens=400))
    conv = Conversation()
    conv.add_user("Tell me a story about a cat.")
    done = engine.reply(conv)
    assert done.stop_reason is StopReason.REPETITION
    assert done.stats.completion_tokens < 400
    # Off: the same prompt runs on to the token limit.
    engine.repeat_guard = RepeatGuard(enabled=False)
    engine.sampling = engine.sampling.model_copy(update={"max_tokens": 120})
    conv = Conversation()
    conv.add_user("Tell me a story about a cat.")
    assert engine.reply(conv).stop_reason is StopReason.MAX_TOKENS


def test_chinese_prompt_streams_cleanly(demo_backend) -> None:
    engine = Engine(demo_backend, Sampling(temperature=0.0, seed=1, max_tokens=48))
    conv = Conversation()
    conv.add_user("请用中文写一首关于春天的短诗。")
    deltas = []
    done = None
    for event in engine.stream(conv):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            done = event
    assert done is not None
    assert "".join(deltas) == done.text
    assert not any("\ufffd" in delta for delta in deltas)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in done.text), done.text


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_same_seed_same_reply_on_the_demo(demo_backend, temperature: float) -> None:
    engine = Engine(demo_backend, Sampling(temperature=temperature, seed=99, max_tokens=24))
    replies = []
    for _ in range(2):
        # From the same (empty) cache. This was the suite's flaky test: once in a full
        # run the first reply differed from the second (a near-tie flipped at
        # temperature 0). The one input that varies between runs is which other test's
        # cells the shared model holds, and a prompt split differently across the cache
        # gets logits that differ in the last digits (llama.cpp's CPU kernels are not
        # batch-invariant). Not reproduced in isolation with five other prior prompts.
        demo_backend.clear_state()
        conv = Conversation()
        conv.add_user("Write one sentence about the sea.")
        replies.append(engine.reply(conv).text)
    assert replies[0] == replies[1]


def test_long_pieces_decode_in_the_real_vocabulary(demo_backend) -> None:
    tokenizer = demo_backend.tokenizer
    ids = tokenizer.tokenize(" प्रधानमंत्री")
    assert len(ids) == 1
    assert tokenizer.piece(ids[0]).decode() == " प्रधानमंत्री"
    assert len(tokenizer.piece(ids[0])) > 32
    assert demo_backend.llama.detokenize(ids) == b""  # the bug this guards against


def test_core_never_imports_textual_or_llama_at_import_time() -> None:
    code = (
        "import sys, gemma_chat, gemma_chat.generation.engine, gemma_chat.chat.template, "
        "gemma_chat.chat.context, "
        "gemma_chat.models.resolve, gemma_chat.config.settings, gemma_chat.config.config_file, "
        "gemma_chat.cli; "
        "bad = [m for m in ('textual', 'llama_cpp') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
