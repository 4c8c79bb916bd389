"""Fitting conversations into the context, with a real tokenizer, and the KV-cache
reuse across turns on real llama.cpp."""

from __future__ import annotations

import pytest

from gemma_chat.backend.local import load_vocab
from gemma_chat.chat.context import default_ctx, fit_prompt, reply_reserve, round_ctx
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.errors import ContextError


@pytest.fixture(scope="module")
def template(demo_path) -> GemmaTemplate:
    return GemmaTemplate(load_vocab(demo_path))


def long_conversation(turn_words: int, pairs: int, system: str | None = "Be kind.") -> Conversation:
    conv = Conversation(system=system)
    for index in range(pairs):
        conv.add_user(f"question {index} " + "word " * turn_words)
        conv.add_model(f"answer {index} " + "word " * turn_words, StopReason.END_OF_TURN)
    conv.add_user("the newest question")
    return conv


def test_ctx_defaults() -> None:
    assert default_ctx(32768) == 8192
    assert default_ctx(8192) == 8192
    assert default_ctx(1000) == 768
    assert default_ctx(None) == 8192
    assert round_ctx(1000) == 1024 and round_ctx(1024) == 1024
    assert reply_reserve(1024, 8192) == 1024 and reply_reserve(4096, 2048) == 512


def test_fits_without_dropping(template) -> None:
    conv = long_conversation(10, 3)
    fitted = fit_prompt(template, conv, 2048, 256)
    assert fitted.dropped_turns == 0
    assert fitted.ids == template.render_conversation(conv)


def test_drops_oldest_pairs_keeps_system_and_newest(template) -> None:
    conv = long_conversation(100, 10)
    fitted = fit_prompt(template, conv, 1024, 256)
    assert fitted.dropped_turns > 0 and fitted.dropped_turns % 2 == 0
    assert len(fitted.ids) <= 1024 - 256
    text, _ = template.inspect(fitted.ids)
    assert text.startswith("<bos><start_of_turn>user\nBe kind.\n\nquestion ")
    assert "question 0 " not in text
    assert text.endswith("the newest question<end_of_turn>\n<start_of_turn>model\n")
    # It dropped no more than it had to.
    bigger = fit_prompt(template, conv, 1024 + 256, 256)
    assert bigger.dropped_turns < fitted.dropped_turns


@pytest.mark.parametrize("system", ["Be kind.", None])
def test_fitting_at_the_exact_boundary(template, system: str | None) -> None:
    """At every drop point: a budget of exactly the rendered length keeps those turns,
    one token less drops exactly one more pair. The expected lengths come from
    ``render`` (which writes BOS and the generation prompt), not from fit_prompt's own
    arithmetic, so leaving BOS or the model header out of the count shows up here."""
    conv = long_conversation(7, 4, system=system)
    reserve = 100
    pairs = len(conv.turns) // 2  # 4 answered pairs, then the newest question
    for dropped in range(0, 2 * pairs + 1, 2):
        ids = template.render(conv.turns[dropped:], conv.system)
        exact = fit_prompt(template, conv, len(ids) + reserve, reserve)
        assert (exact.dropped_turns, exact.ids) == (dropped, ids)
        assert len(exact.ids) == len(ids)  # it fits exactly: nothing more is dropped
        if dropped == 2 * pairs:  # only the newest question is left
            with pytest.raises(ContextError, match="too long"):
                fit_prompt(template, conv, len(ids) - 1 + reserve, reserve)
            continue
        over = fit_prompt(template, conv, len(ids) - 1 + reserve, reserve)
        assert over.dropped_turns == dropped + 2  # exactly one more pair
        assert over.ids == template.render(conv.turns[dropped + 2 :], conv.system)
        assert len(over.ids) <= len(ids) - 1


def test_bos_and_the_generation_prompt_are_counted(template) -> None:
    conv = long_conversation(7, 1)
    ids = template.render_conversation(conv)
    assert ids[0] == template.ids.bos and ids.count(template.ids.bos) == 1
    assert ids[-len(template.generation_prompt()) :] == template.generation_prompt()
    body = len(ids) - 1 - len(template.generation_prompt())  # the turns alone
    # A budget that holds the turns but not BOS and the model header drops a pair.
    for budget in (body, body + 1, body + len(template.generation_prompt())):
        assert fit_prompt(template, conv, budget + 10, 10).dropped_turns == 2
    assert fit_prompt(template, conv, len(ids) + 10, 10).dropped_turns == 0


def test_newest_message_alone_too_long(template) -> None:
    conv = Conversation()
    conv.add_user("word " * 2000)
    with pytest.raises(ContextError, match="too long"):
        fit_prompt(template, conv, 1024, 256)


def test_follow_up_turns_evaluate_only_new_tokens(tiny_engine) -> None:
    engine = tiny_engine("runaway")
    engine.backend.clear_state()  # the shared backend may hold another test's prompt
    conv = Conversation(system="Tell stories.")
    previous_kv = 0
    for turn, question in enumerate(["A story?", "Another?", "One more?"]):
        conv.add_user(question)
        prompt = engine.template.render_conversation(conv)
        done = engine.reply(conv)
        assert done.text == " Once upon a time."
        assert done.token_ids is not None
        if turn == 0:
            assert done.stats.evaluated_tokens == len(prompt)
        else:
            assert done.stats.evaluated_tokens == len(prompt) - previous_kv
            assert done.stats.evaluated_tokens < 20
        previous_kv = len(prompt) + done.stats.completion_tokens


def test_kv_reuse_on_the_demo_model(demo_backend) -> None:
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    demo_backend.clear_state()  # the shared backend may hold another test's prompt
    engine = Engine(demo_backend, Sampling(temperature=0.0, seed=1, max_tokens=24))
    conv = Conversation()
    evaluated = []
    for question in ["Name a colour.", "Name a fruit.", "Name a city."]:
        conv.add_user(question)
        prompt_len = len(engine.template.render_conversation(conv))
        done = engine.reply(conv)
        evaluated.append((prompt_len, done.stats.evaluated_tokens, done.stats.completion_tokens))
    (p1, e1, _), (p2, e2, _), (p3, e3, _) = evaluated
    assert e1 == p1
    # Follow-ups evaluate only the new turn (plus at most the reply's re-tokenized text).
    assert e2 < p2 / 2 and e3 < p3 / 3
    assert e2 <= (p2 - p1) and e3 <= (p3 - p2)


def test_switching_branches_cuts_the_cache_at_the_fork(demo_backend) -> None:
    """Branch A, then branch B that leaves A after its first message: the cache is cut
    back at the fork (gemma-chat asks for the full-size SWA cache, so Gemma's sliding-
    window layers can be cut anywhere), only B's own part is evaluated, and B's reply is
    token for token the one a fresh evaluation gives."""
    from gemma_chat.backend.base import common_prefix
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    engine = Engine(demo_backend, Sampling(temperature=0.0, seed=1, max_tokens=8))
    long_reply = " ".join(f"Line {n}: the lighthouse keeper logged the weather." for n in range(20))

    def branch(reply: str) -> Conversation:
        conversation = Conversation()
        conversation.add_user("Tell me about the lighthouse keeper's logbook.")
        conversation.add_model(reply, StopReason.END_OF_TURN)
        conversation.add_user("What did he log most?")
        return conversation

    a, b = branch(long_reply), branch("He logged the weather. " + long_reply)
    engine.reply(a)
    cached = demo_backend.cached_tokens
    prompt_b = engine.template.render_conversation(b)
    shared = common_prefix(cached, prompt_b)
    assert 0 < shared < len(cached) - 200  # the fork is far back
    reused = engine.reply(branch(b.turns[1].text))
    assert reused.stats.evaluated_tokens == len(prompt_b) - shared
    demo_backend.clear_state()
    fresh = engine.reply(branch(b.turns[1].text))
    assert fresh.stats.evaluated_tokens == len(prompt_b)
    assert reused.token_ids == fresh.token_ids
