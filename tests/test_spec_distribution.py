"""Speculative decoding is lossless at temperature > 0: a two-sample test that can fail.

A tiny Gemma 2 model (``tests/tinygemma.py``) follows a counting script; at temperature
2.5 its next token is the script's with probability about 0.75 per step and any other
token otherwise, so replies have a real distribution, and prompt lookup (or the model
drafting for itself) drafts the script from the quoted prompt. Replies decoded plainly
and with speculation, on disjoint fixed seeds, are compared by ``spec_dist.compare``
(permutation tests on the token at each position and on each prefix; see there). The
planted lossy rules (``spec_dist.plant``) must be rejected at the same sample size, so
the test shows its own power.

Everything is deterministic on a build: fixed seeds for the replies and for the
permutations, so the test cannot flake. The thresholds leave a wide margin (the figures
are in the asserts' comments: honest p-values 0.31-0.39 against an alarm at 0.01, planted
rules at the smallest p-value and 8-60 times the honest statistics). A build whose
logits differ slightly draws other replies: each honest comparison is then a fresh
sample, with a 1% chance of a false alarm.
"""

from __future__ import annotations

import pytest
from spec_dist import compare, draw, plant
from tinygemma import END_OF_TURN_ID, EOS_ID, build_tiny_gemma2

from gemma_chat.backend.local import LlamaBackend
from gemma_chat.backend.offload import OffloadPlan
from gemma_chat.chat.conversation import Conversation
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import Sampling

WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
N = 800
"""Replies per sample."""
K = 8
"""Tokens per reply."""
SAMPLING = Sampling(temperature=2.5, top_k=0, top_p=1.0)
STOPS = (END_OF_TURN_ID, EOS_ID)

pytestmark = pytest.mark.slow  # about 12-17 s in all under load


@pytest.fixture(scope="module")
def counting(tiny_dir):
    model = build_tiny_gemma2(
        tiny_dir / "count.gguf", [f"▁{word}" for word in WORDS], context_length=512
    )
    backend = LlamaBackend(model.path, n_ctx=512, offload=OffloadPlan(0, "cpu"), threads=1)
    conversation = Conversation()
    conversation.add_user(f"Repeat: {' '.join(WORDS)}")
    prompt = GemmaTemplate(backend.tokenizer).render_conversation(conversation)
    yield backend, prompt, model
    backend.close()


def replies(backend, prompt, mode: str, first_seed: int):
    backend.speculative = mode
    try:
        return draw(backend, prompt, SAMPLING, range(first_seed, first_seed + N), K, STOPS)
    finally:
        backend.speculative = "off"


def test_speculation_keeps_the_distribution_and_a_lossy_rule_is_caught(counting) -> None:
    backend, prompt, _ = counting
    plain, _, _ = replies(backend, prompt, "off", 1)
    control, _, _ = replies(backend, prompt, "off", 1 + N)
    lookup, drafted, accepted = replies(backend, prompt, "lookup", 1 + 2 * N)
    # Drafts were proposed and the target refused some of them: the test is not vacuous.
    assert drafted > N and 0 < accepted < drafted, (drafted, accepted)

    noise = compare(plain, control)
    honest = compare(plain, lookup)
    # Measured: control p = 0.39, lookup p = 0.31 (largest standardised statistic 1.8 and
    # 2.2, max TVD 0.043 and 0.041, acceptance 0.35); an alarm needs p < 0.01.
    assert noise["global_p"] > 0.01, noise
    assert honest["global_p"] > 0.01, honest

    vocab = backend.llama.n_vocab()
    for kind in ("greedy", "leak"):
        with plant(kind, vocab, leak=0.5):
            lossy, _, _ = replies(backend, prompt, "lookup", 1 + 2 * N)
        caught = compare(plain, lossy)
        # Measured: p = 1/2001 for both: the largest standardised statistic is 126
        # (greedy; acceptance 0.98) and 18 (leak; acceptance 0.55), against 1.8-2.2 for
        # the honest comparisons. (A leak of 0.3 is not detected at this size: z 3.2.)
        assert caught["global_p"] < 0.001, (kind, caught)


def test_self_draft_keeps_the_distribution(counting) -> None:
    from gemma_chat.backend.draft_model import DraftModel

    backend, prompt, model = counting
    plain, _, _ = replies(backend, prompt, "off", 1)
    backend.draft_model = DraftModel(model.path, n_ctx=512, threads=1)
    try:
        drafted_replies, drafted, accepted = replies(backend, prompt, "draft", 1 + 3 * N)
    finally:
        backend.draft_model.close()
        backend.draft_model = None
    assert drafted > N and 0 < accepted < drafted, (drafted, accepted)
    # Measured: acceptance 0.36, p = 0.37 (largest standardised statistic 1.8).
    assert compare(plain, drafted_replies)["global_p"] > 0.01


def test_a_repeat_penalty_keeps_the_distribution(tiny_dir) -> None:
    """The penalty sees every kept token, drafted or not: a model that alternates two
    tokens, penalised for repeating them, samples the same replies with lookup."""
    model = build_tiny_gemma2(tiny_dir / "cycle.gguf", ["▁a", "▁b", "▁a"], context_length=512)
    backend = LlamaBackend(model.path, n_ctx=512, offload=OffloadPlan(0, "cpu"), threads=1)
    conversation = Conversation()
    conversation.add_user("Repeat: a b a b a b a b a b")
    prompt = GemmaTemplate(backend.tokenizer).render_conversation(conversation)
    penalised = SAMPLING.model_copy(update={"repeat_penalty": 1.3})
    try:
        plain, _, _ = draw(backend, prompt, penalised, range(1, 1 + N), K, STOPS)
        unpenalised, _, _ = draw(backend, prompt, SAMPLING, range(1 + N, 1 + 2 * N), K, STOPS)
        backend.speculative = "lookup"
        lookup, drafted, accepted = draw(
            backend, prompt, penalised, range(1 + 2 * N, 1 + 3 * N), K, STOPS
        )
    finally:
        backend.speculative = "off"
        backend.close()
    assert drafted > 0 and 0 < accepted < drafted, (drafted, accepted)
    # The penalty matters here (p = 1/2001 against no penalty); lookup keeps it
    # (measured: p = 0.58, acceptance 0.06).
    assert compare(plain, unpenalised)["global_p"] < 0.001
    assert compare(plain, lookup)["global_p"] > 0.01
