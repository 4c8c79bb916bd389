"""Speculative decoding (prompt lookup) on real llama.cpp: the same tokens as plain
decoding, every stop rule at every accepted token, and nothing past a stop kept in the
KV cache."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import pytest
import stories
from conftest import GREEDY

from gemma_chat.backend import local
from gemma_chat.backend.speculative import Pacer, PromptLookup, fit_draft
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta


@pytest.fixture(autouse=True)
def two_token_matches(request, monkeypatch) -> None:
    """The tiny models' scripts repeat only two-token n-grams: their tests are about
    verifying drafts, so prompt lookup drafts from two-token matches there."""
    if "tiny_backends" in request.fixturenames:
        monkeypatch.setattr(local, "PromptLookup", partial(PromptLookup, ngram_min=2))


@contextmanager
def mode(backend, value: str) -> Iterator[None]:
    old = backend.speculative
    backend.speculative = value
    try:
        yield
    finally:
        backend.speculative = old


def run(engine: Engine, conversation: Conversation, cancel_after: int | None = None):
    cancel = threading.Event()
    deltas: list[str] = []
    done = None
    for event in engine.stream(conversation, cancel):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
            if cancel_after is not None and len(deltas) >= cancel_after:
                cancel.set()
        else:
            done = event
    assert isinstance(done, ReplyDone)
    return deltas, done, engine.backend.cached_tokens


def both(engine: Engine, conversation: Conversation, cancel_after: int | None = None):
    """(plain, speculative) results of the same reply."""
    with mode(engine.backend, "off"):
        plain = run(engine, conversation, cancel_after)
    with mode(engine.backend, "lookup"):
        spec = run(engine, conversation, cancel_after)
    return plain, spec


def conversation(*turns: str) -> Conversation:
    """User, model, user... turns; the last one is the pending user message."""
    conv = Conversation()
    for i, text in enumerate(turns):
        if i % 2 == 0:
            conv.add_user(text)
        else:
            conv.add_model(text, StopReason.END_OF_TURN)
    return conv


PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, lit the great "
    "lamp, and wrote one line in the logbook: the weather, the ships, and the time."
)
DEMO_PROMPTS = [
    f"Repeat this text exactly:\n\n{PASSAGE}",
    f"Quote the first sentence of this text:\n\n{PASSAGE}\n\n{PASSAGE}",
    f"Summarise this text in one sentence:\n\n{PASSAGE}",
]
"""Grounded prompts. llama.cpp's CPU kernels are not batch-invariant (see
``backend/speculative.py``): on free-form prompts where the demo model hesitates between
two junk tokens, a batch can flip the choice, as re-splitting the prompt can."""


@pytest.mark.parametrize("prompt", DEMO_PROMPTS)
def test_greedy_lookup_is_token_identical_on_the_demo_model(demo_backend, prompt) -> None:
    engine = Engine(demo_backend, GREEDY.model_copy(update={"max_tokens": 40}))
    (p_deltas, plain, _), (s_deltas, spec, _) = both(engine, conversation(prompt))
    assert spec.text == plain.text and "".join(s_deltas) == "".join(p_deltas)
    assert spec.token_ids == plain.token_ids
    assert spec.stop_reason is plain.stop_reason
    assert spec.stats.speculative == "lookup" and plain.stats.speculative is None
    assert spec.stats.drafted_tokens > 0


def test_lookup_accepts_drafts_when_quoting(demo_backend) -> None:
    engine = Engine(demo_backend, GREEDY.model_copy(update={"max_tokens": 40}))
    _, (_, spec, _) = both(engine, conversation(DEMO_PROMPTS[0]))
    assert spec.stats.accepted_tokens > 0
    assert 0 < spec.stats.acceptance <= 1


# The tiny Gemma 2 models follow a fixed script. The earlier turns put that script into
# the prompt, so prompt lookup drafts it, stop token included, and the target accepts.
STOP_CASES = {
    "end_of_turn": ("runaway", ("Tell a story", stories.RUNAWAY_REPLY, "Again"), {}),
    # Drafted "Sure!" again is rejected: the stop is the target's own token after it.
    "new_turn": ("new_turn", (" Sure! Sure!",), {}),
    "marker_as_text": ("marker", (" The end.<end_of_turn>\n<start_of_turn>user\n",), {}),
    "repetition": ("loop", ("Say cat", " cat cat\n cat cat cat\n cat", "More"), {}),
    "max_tokens": (
        "loop",
        ("Say cat", " cat cat\n cat cat cat\n cat", "More"),
        {"max_tokens": 7},
    ),
}


@pytest.mark.parametrize("case", list(STOP_CASES))
def test_stop_rules_hold_inside_accepted_drafts(tiny_backends, case) -> None:
    name, turns, update = STOP_CASES[case]
    engine = Engine(tiny_backends[name], GREEDY.model_copy(update={"max_tokens": 200, **update}))
    if case == "max_tokens":
        engine.repeat_guard = engine.repeat_guard.model_copy(update={"enabled": False})
    (p_deltas, plain, p_cache), (s_deltas, spec, s_cache) = both(engine, conversation(*turns))
    assert s_deltas == p_deltas
    assert (spec.text, spec.stop_reason, spec.token_ids) == (
        plain.text,
        plain.stop_reason,
        plain.token_ids,
    )
    assert spec.stats.completion_tokens == plain.stats.completion_tokens
    # Nothing past the stop is kept: the cache holds exactly what plain decoding holds.
    assert s_cache == p_cache
    assert spec.stats.drafted_tokens > 0
    assert spec.stats.accepted_tokens > 0 or case == "new_turn"
    expected = {"repetition": StopReason.REPETITION, "max_tokens": StopReason.MAX_TOKENS}
    assert spec.stop_reason is expected.get(case, spec.stop_reason)


def test_end_of_turn_inside_a_draft_stops_the_reply(tiny_backends) -> None:
    engine = Engine(tiny_backends["runaway"], GREEDY.model_copy(update={"max_tokens": 200}))
    with mode(engine.backend, "lookup"):
        deltas, done, cache = run(engine, conversation("Tell", stories.RUNAWAY_REPLY, "Again"))
    assert "".join(deltas) == done.text == stories.RUNAWAY_REPLY
    assert done.stop_reason is StopReason.END_OF_TURN
    # "▁a" matched the earlier turn: "▁time", "." and <end_of_turn> were drafted and
    # accepted, and so was the "\n<start_of_turn>user" after it (the model runs away):
    # that is neither shown nor left in the cache.
    assert done.stats.accepted_tokens >= 3
    assert len(cache) == done.stats.prompt_tokens + done.stats.completion_tokens


def test_cancel_mid_draft_keeps_only_what_was_shown(tiny_backends) -> None:
    backend = tiny_backends["loop"]
    engine = Engine(backend, GREEDY.model_copy(update={"max_tokens": 200}))
    engine.repeat_guard = engine.repeat_guard.model_copy(update={"enabled": False})
    conv = conversation("Say cat")
    with mode(backend, "off"):
        Engine(backend, GREEDY.model_copy(update={"max_tokens": 12})).reply(conv)
    conv.add_user("More")  # the prompt now holds the loop as the model's own ids
    plain, spec = both(engine, conv, cancel_after=5)
    (p_deltas, p_done, p_cache), (s_deltas, s_done, s_cache) = plain, spec
    assert s_done.stop_reason is p_done.stop_reason is StopReason.CANCELLED
    assert s_deltas == p_deltas and len(s_deltas) == 5
    assert s_done.text == p_done.text == "".join(s_deltas)
    # The first token came from the prompt; the next five (the fifth seen after the
    # cancel) were accepted from one draft, already in the cache: what follows the shown
    # reply is dropped from it. (Plain decoding holds one token less: it stopped before
    # evaluating the last shown token.)
    assert s_done.stats.accepted_tokens >= s_done.stats.completion_tokens
    assert len(s_cache) == s_done.stats.prompt_tokens + s_done.stats.completion_tokens
    assert s_cache[: len(p_cache)] == p_cache
    # The cache is consistent: the next reply is the same as from a clean cache.
    with mode(backend, "lookup"):
        _, again, _ = run(engine, conv)
    backend.clear_state()
    with mode(backend, "off"):
        _, clean, _ = run(engine, conv)
    assert again.token_ids == clean.token_ids and again.text


def test_prompt_lookup_drafts_the_latest_continuation() -> None:
    lookup = PromptLookup(ngram_max=3, ngram_min=2)
    history = [1, 2, 3, 4, 9, 9, 1, 2, 3, 5, 6, 7, 1, 2]
    assert lookup.draft(history, 3) == [3, 5, 6]  # the latest "1 2" went on "3 5 6"
    history += [3]
    assert lookup.draft(history, 2) == [5, 6]  # "1 2 3" (longest) -> "5 6"
    assert lookup.draft([7, 8], 4) == []  # not an extension: re-indexed, no match


def test_prompt_lookup_matches_three_to_six_tokens_by_default() -> None:
    # "1 2" is a two-token match only: weak evidence, no draft.
    assert PromptLookup().draft([1, 2, 3, 4, 9, 9, 1, 2], 3) == []
    assert PromptLookup().draft([1, 2, 3, 4, 9, 9, 1, 2, 3], 3) == [4, 9, 9]

    # Up to six tokens are matched: "6 7 1 2 3" picks the occurrence that went on "4",
    # where the latest "7 1 2 3" went on "5".
    history = [6, 7, 1, 2, 3, 4, 9, 7, 1, 2, 3, 5, 6, 7, 1, 2, 3]
    assert PromptLookup().draft(history, 1) == [4]


def test_prompt_lookup_drafts_a_loop_past_the_end_of_the_history() -> None:
    # The latest "1 2 1 2 1 2" continues two tokens before the end: the loop goes on.
    assert PromptLookup().draft([9, 8, 7] + [1, 2] * 10, 7) == [1, 2, 1, 2, 1, 2, 1]
    # A period of three, matched three tokens back.
    assert PromptLookup().draft([5] + [1, 2, 3] * 3, 5) == [1, 2, 3, 1, 2]
    # An earlier occurrence far enough back is read as it was, not repeated.
    assert PromptLookup().draft([1, 2, 3, 4, 5, 6, 1, 2, 3], 4) == [4, 5, 6, 1]


def test_pacer_backs_off_after_misses_and_recovers() -> None:
    pacer = Pacer(max_draft=15, max_pause=16)
    assert pacer.want() == 7  # 8 rows with the pending token
    pacer.record(7, 0)
    assert [pacer.want() for _ in range(3)] == [0, 0, 3]  # paused for 2, then the shortest
    pacer.record(3, 0)
    assert [pacer.want() for _ in range(5)] == [0, 0, 0, 0, 3]
    pacer.record(3, 3)
    assert not pacer.confident  # 3 of 13 kept
    assert pacer.want() == 7  # a full acceptance: the next size up
    pacer.record(3, 0)  # still not confident: a miss pauses again, from the start
    assert [pacer.want() for _ in range(3)] == [0, 0, 3]
    pacer.record(3, 3)
    pacer.record(7, 7)
    assert pacer.want() == 15
    pacer.record(15, 15)
    assert pacer.want() == 15  # never past max_draft
    pacer.record(15, 9)  # more than half kept: it paid; the size that holds what was kept
    assert pacer.want() == 11
    assert Pacer(max_draft=8).want() == 7 and Pacer(max_draft=3).want() == 3


def test_a_reply_that_copies_its_history_is_not_paused_by_a_miss() -> None:
    """Once the reply's drafts have kept half of their tokens (a quote, an edit), a miss
    is where the reply departs from its source for a word or two: no pause, the shortest
    draft next, and after a draft kept in full the longest at once."""
    pacer = Pacer(max_draft=15, max_pause=16)
    pacer.record(7, 7)
    assert pacer.confident and pacer.want() == 15
    pacer.record(15, 2)  # a miss: 9 of 22 kept, under half
    assert not pacer.confident
    assert [pacer.want() for _ in range(3)] == [0, 0, 3]
    pacer = Pacer(max_draft=15, max_pause=16)
    pacer.record(7, 7)
    pacer.record(15, 15)
    pacer.record(15, 2)  # a miss, with 24 of 37 kept so far
    assert pacer.confident
    assert pacer.want() == 3  # at once: no pause
    pacer.record(3, 3)
    assert pacer.want() == 15  # kept in full: the longest, not 7
    pacer.record(15, 1)  # a miss again, still trusted (28 of 55): no pause
    assert pacer.want() == 3
    pacer.record(3, 1)  # a second miss in a row (29 of 58): the source did not resume
    assert pacer.confident
    assert [pacer.want() for _ in range(5)] == [0, 0, 0, 0, 3]
    pacer.record(3, 0)  # the reply stopped copying: 29 of 61 kept
    assert not pacer.confident
    assert [pacer.want() for _ in range(9)] == [0] * 8 + [3]


def test_a_trusted_reply_that_goes_free_form_backs_off() -> None:
    """The share is the whole reply's: after a long quote a reply stays trusted for
    dozens of missed drafts. Only the first miss of a run is forgiven, so free-form text
    after a quote pauses as it would anywhere (the replay: forgiving every miss there
    cost the free-form part 2-9% of plain speed)."""
    pacer = Pacer(max_draft=15, max_pause=64)
    for _ in range(8):
        pacer.record(15, 15)  # a quote: 120 of 120 kept
    wanted = []
    while len([w for w in wanted if w]) < 6:  # then free-form: every draft missed
        wanted.append(pacer.want())
        pacer.record(wanted[-1], 0)
    assert pacer.confident  # 120 of 150 kept: still trusted
    # The first miss is forgiven; from the second, the pauses double as anywhere.
    assert wanted == [15, 3] + [0] * 4 + [3] + [0] * 8 + [3] + [0] * 16 + [3] + [0] * 32 + [3]
    # A draft kept in full ends the run: the next miss is forgiven again.
    pacer = Pacer(max_draft=15, max_pause=64)
    pacer.record(15, 15)
    pacer.record(15, 15)
    pacer.record(15, 2)
    assert pacer.want() == 3
    pacer.record(3, 3)
    pacer.record(15, 2)  # 37 of 63 kept
    assert pacer.confident and pacer.want() == 3


def test_drafts_are_cut_to_batch_sizes_that_pay() -> None:
    assert [fit_draft(n) for n in range(18)] == [
        0,
        0,
        0,
        3,
        3,
        3,
        3,
        7,
        7,
        7,
        7,
        11,
        11,
        11,
        11,
        15,
        15,
        15,
    ]


def test_ask_reports_speculation_in_json_and_stats(demo_path) -> None:
    from conftest import run_cli

    text = f"{PASSAGE}\n".encode()
    args = ("ask", "Repeat this text exactly.", "--temp", "0", "-n", "24", "--no-save")
    proc = run_cli(*args, "--json", "--speculative", "lookup", stdin=text)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["speculative"] == "lookup"
    assert 0 < result["accepted_tokens"] <= result["drafted_tokens"]
    assert result["acceptance"] == round(result["accepted_tokens"] / result["drafted_tokens"], 4)
    off = json.loads(run_cli(*args, "--json", "--speculative", "off", stdin=text).stdout)
    assert off["speculative"] is None and off["drafted_tokens"] == 0
    assert off["text"] == result["text"]
    stats = run_cli(*args, "--stats", "--speculative", "auto", stdin=text)  # auto: lookup
    assert "(lookup: " in stats.stderr.decode() and "drafted accepted" in stats.stderr.decode()
    plain = run_cli(*args, "--stats", stdin=text)  # the default is off: no drafts
    assert "(lookup: " not in plain.stderr.decode()


def test_a_bad_speculative_mode_is_one_line(demo_path) -> None:
    from conftest import run_cli

    proc = run_cli("ask", "hi", "--speculative", "fast")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "speculative" in err, err
    assert "Traceback" not in err


# ---------------------------------------------------------------- a draft model


@pytest.fixture(scope="module")
def demo_self_draft(demo_path):
    from gemma_chat.backend.draft_model import DraftModel
    from gemma_chat.backend.local import default_threads

    draft = DraftModel(demo_path, n_ctx=2048, threads=default_threads())
    yield draft
    draft.close()


def test_the_demo_model_drafting_for_itself_is_identical(demo_backend, demo_self_draft) -> None:
    engine = Engine(demo_backend, GREEDY.model_copy(update={"max_tokens": 32}))
    demo_backend.draft_model = demo_self_draft
    try:
        with mode(demo_backend, "off"):
            _, plain, _ = run(engine, conversation(DEMO_PROMPTS[2]))
        with mode(demo_backend, "draft"):
            _, spec, _ = run(engine, conversation(DEMO_PROMPTS[2]))
    finally:
        demo_backend.draft_model = None
    assert spec.token_ids == plain.token_ids and spec.text == plain.text
    assert spec.stats.speculative == "draft"
    assert spec.stats.acceptance is not None and spec.stats.acceptance >= 0.8  # near 1


@pytest.mark.parametrize("name", ["runaway", "new_turn", "marker"])
def test_a_tiny_gemma2_pair_keeps_the_stop_rules(tiny_backends, tiny_models, name) -> None:
    from gemma_chat.backend.draft_model import DraftModel

    backend = tiny_backends[name]
    backend.draft_model = DraftModel(tiny_models[name].path, n_ctx=512, threads=1)
    engine = Engine(backend, GREEDY.model_copy(update={"max_tokens": 200}))
    try:
        with mode(backend, "off"):
            p_deltas, plain, p_cache = run(engine, conversation("Tell a story"))
        with mode(backend, "draft"):
            s_deltas, spec, s_cache = run(engine, conversation("Tell a story"))
    finally:
        backend.draft_model.close()
        backend.draft_model = None
    assert s_deltas == p_deltas and spec.text == plain.text
    assert spec.stop_reason is plain.stop_reason
    assert s_cache == p_cache  # nothing drafted past the stop stays in the cache
    # The draft model follows the same script, so its drafts are accepted: for the
    # runaway, every reply token after the first and the <end_of_turn> that stops it.
    assert spec.stats.accepted_tokens > 0
    if name == "runaway":
        assert spec.stats.accepted_tokens == spec.stats.completion_tokens
    # The draft model follows the same script, so no drafted token was refused, and
    # what the draft held past the stop is not counted: the acceptance is exactly 1.
    assert spec.stats.acceptance == 1.0, spec.stats


def test_a_draft_model_with_another_vocabulary_is_refused(demo_backend, tiny_backends) -> None:
    from gemma_chat.backend.draft_model import check_same_vocab
    from gemma_chat.errors import ModelError

    with pytest.raises(ModelError) as caught:
        check_same_vocab(demo_backend.tokenizer, tiny_backends["runaway"].tokenizer, "tiny.gguf")
    message = str(caught.value)
    assert "\n" not in message and "tiny.gguf" in message and "same vocabulary" in message
    check_same_vocab(tiny_backends["runaway"].tokenizer, tiny_backends["runaway"].tokenizer, "x")


def test_ask_refuses_a_mismatched_draft_model_in_one_line(demo_path, tiny_models) -> None:
    from conftest import run_cli

    draft = str(tiny_models["runaway"].path)
    args = ("ask", "hi", "-m", str(demo_path), "--draft-model", draft, "-n", "4")
    proc = run_cli(*args, "--speculative", "auto")  # auto: draft, as a draft model is set
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1, err
    assert "same vocabulary" in err and "Traceback" not in err


async def test_the_status_bar_shows_the_acceptance(demo_path) -> None:
    from tui_support import scripted_loader, send, wait_until

    from gemma_chat.backend.local import load_vocab
    from gemma_chat.backend.speculative import SpecStats
    from gemma_chat.config.settings import Settings
    from gemma_chat.tui.app import GemmaChatApp

    loader = scripted_loader(load_vocab(demo_path), ["Hello there, friend."])
    app = GemmaChatApp(Settings(), loader=loader)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        # What a speculating backend reports after its generation.
        app.engine.backend.last_speculation = SpecStats("lookup", drafted=10, accepted=8)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        speed = str(app.query_one("#status-speed").render())
        assert "tok/s" in speed and "drafts 80% kept" in speed


class _Recording:
    """Prompt lookup that records what it is asked for and drafts one token short (so a
    draft of any size reaches the cut to ``DRAFT_SIZES``)."""

    def __init__(self) -> None:
        self.lookup, self.asked = PromptLookup(ngram_min=2), []

    def draft(self, history, k):
        self.asked.append(k)
        return self.lookup.draft(history, k)[: max(0, k - 1)]

    def close(self) -> None:
        pass


def _loop_conversation(backend) -> Conversation:
    conv = conversation("Say cat")
    with mode(backend, "off"):
        Engine(backend, GREEDY.model_copy(update={"max_tokens": 12})).reply(conv)
    conv.add_user("More")  # the prompt now holds the loop as the model's own ids
    return conv


def _loop_engine(backend, max_tokens: int) -> Engine:
    """Greedy, with the repetition guard off: the tiny loop model repeats on purpose."""
    engine = Engine(backend, GREEDY.model_copy(update={"max_tokens": max_tokens}))
    engine.repeat_guard = engine.repeat_guard.model_copy(update={"enabled": False})
    return engine


def test_drafts_are_verified_in_batches_of_4_8_12_or_16_rows(tiny_backends, monkeypatch) -> None:
    from gemma_chat.backend import speculative

    backend = tiny_backends["loop"]
    engine = _loop_engine(backend, 40)
    conv = _loop_conversation(backend)
    with mode(backend, "off"):
        _, plain, _ = run(engine, conv)
    rows: list[int] = []
    decode = speculative._decode
    monkeypatch.setattr(
        speculative, "_decode", lambda llm, t: (rows.append(len(t)), decode(llm, t))
    )
    drafter = _Recording()
    monkeypatch.setattr(backend, "_drafter", lambda: drafter)
    with mode(backend, "lookup"):
        _, spec, _ = run(engine, conv)
    assert spec.token_ids == plain.token_ids
    assert spec.stats.drafted_tokens > 0 and 4 in rows
    assert set(rows) <= {1, 4, 8, 12, 16}, rows  # a 3-drafted-token batch at most per 4 rows


def test_speculation_runs_to_the_end_of_the_context_drafting_only_sizes_that_pay(
    tiny_backends, monkeypatch
) -> None:
    """Near the context's end the room for a draft shrinks: the drafter (a draft model
    costs a decode per token) is never asked for tokens that would be cut away, and the
    reply and cache are plain decoding's up to the last cell."""
    from gemma_chat.backend.speculative import DRAFT_SIZES

    backend = tiny_backends["loop"]
    engine = _loop_engine(backend, 1000)
    conv = _loop_conversation(backend)
    with mode(backend, "off"):
        _, plain, p_cache = run(engine, conv)
    drafter = _Recording()
    monkeypatch.setattr(backend, "_drafter", lambda: drafter)
    with mode(backend, "lookup"):
        _, spec, s_cache = run(engine, conv)
    assert spec.token_ids == plain.token_ids and spec.stop_reason is plain.stop_reason
    assert s_cache == p_cache
    assert len(s_cache) >= 500  # it did reach the end of the 512-token context
    assert set(drafter.asked) <= set(DRAFT_SIZES), sorted(set(drafter.asked))
