"""The KV state cache on real llama.cpp: a conversation saved by one backend resumes in a
fresh one with only the new tokens evaluated and the same greedy reply, and every way a
saved state can be unusable falls back to re-evaluation, never a crash or a bad cache."""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gemma_chat.backend import kv_state
from gemma_chat.backend.base import StateError, StatefulBackend
from gemma_chat.backend.kv_cache import MB, KVStateCache, resume_ids
from gemma_chat.backend.local import LlamaBackend, load_vocab
from gemma_chat.backend.offload import OffloadPlan
from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.config.settings import KVCacheSettings, Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone

GREEDY = Sampling(temperature=0.0, seed=1, max_tokens=16)
SHA = "a" * 64
OTHER_SHA = "b" * 64
KEY = "0b7c1f9e-5d1a-4a57-9a8e-3f2d2c1b0a99"
# Long questions and short replies: a few hundred tokens, mostly evaluated in batches
# (fast) rather than decoded one by one.
QUESTIONS = [
    "I am planning an evening of stargazing with my children, who are six and nine years "
    "old. We live near a small town with some light pollution. Tell me about the moon, "
    "what we can see on it with binoculars, and which nights are best for looking at it.",
    "Thank you. How far away is the moon, how long would it take to drive there at "
    "highway speed if there were a road, and how long did the Apollo astronauts take to "
    "fly there? My nine year old loves comparisons like that.",
    "Who walked on the moon first, what did he say when he stepped onto the surface, and "
    "how many people have walked on it since then? Please also tell me who was the last "
    "person to leave the moon, and in which year that happened.",
    "Why is the sky black on the moon even in the daytime, while our sky is blue? Explain "
    "it in a way a six year old could follow, with a simple experiment we could try at "
    "home with a glass of water, a torch and a little milk.",
    "Finally, write a short poem about the moon, four lines long, that rhymes and that my "
    "children could learn by heart before we go outside tonight with our blankets.",
]
NEXT = "Thank you. Now summarise all of that in one line."
SETTINGS = KVCacheSettings(min_tokens=64)


@dataclass
class Chat:
    """A greedy conversation generated on backend A and saved right after its last reply."""

    conversation: Conversation
    ids: list[int]  # resume_ids of the conversation
    saved: list[int]  # the tokens in the saved state
    cache_dir: Path  # a cache holding KEY's entry; copy it before use
    continued: ReplyDone  # A's reply to NEXT right after saving (no save/restore)


@pytest.fixture(scope="module")
def backends(demo_path: Path) -> Iterator[tuple[LlamaBackend, LlamaBackend]]:
    """Two instances of the demo model: A generates and saves, B restores."""
    pair = tuple(
        LlamaBackend(demo_path, n_ctx=2048, offload=OffloadPlan(0, "cpu")) for _ in range(2)
    )
    yield pair  # type: ignore[misc]
    for backend in pair:
        backend.close()


@pytest.fixture(scope="module")
def chat(backends, tmp_path_factory: pytest.TempPathFactory) -> Chat:
    a, _ = backends
    engine = Engine(a, GREEDY)
    conversation = Conversation(system="You are a helpful astronomer.")
    for question in QUESTIONS:
        conversation.add_user(question)
        engine.reply(conversation)
    ids = resume_ids(engine.template, conversation)
    cache = KVStateCache(SETTINGS, tmp_path_factory.mktemp("kv"))
    assert cache.save(a, KEY, SHA, ids), cache.last_reason
    saved = a.state_tokens(cache.directory / f"{KEY}.kv")
    following = copy.deepcopy(conversation)
    following.add_user(NEXT)
    continued = engine.reply(following)
    return Chat(conversation, ids, saved, cache.directory, continued)


@pytest.fixture
def cache(chat: Chat, tmp_path: Path) -> KVStateCache:
    """A private copy of the saved cache."""
    directory = tmp_path / "kv"
    shutil.copytree(chat.cache_dir, directory)
    return KVStateCache(SETTINGS.model_copy(), directory)


def next_reply(backend: LlamaBackend, conversation: Conversation) -> ReplyDone:
    following = copy.deepcopy(conversation)
    following.add_user(NEXT)
    return Engine(backend, GREEDY).reply(following)


def hold(backend: LlamaBackend, ids: list[int]) -> None:
    """Make the backend's KV cache hold exactly ``ids`` (cheap: the prefix is reused)."""
    tokens = backend.generate(ids, GREEDY, 1)
    next(tokens)
    tokens.close()
    assert backend.cached_tokens == tuple(ids)


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_resume_evaluates_only_new_tokens_and_gives_the_same_reply(chat, backends, cache):
    _, b = backends
    assert 300 <= len(chat.saved) < 2048  # a conversation of a few hundred tokens
    b.clear_state()
    restored = cache.restore(b, KEY, SHA, chat.ids)
    assert restored == len(chat.saved), cache.last_reason
    assert b.cached_tokens == tuple(chat.ids[:restored])
    resumed = next_reply(b, chat.conversation)
    prompt = resumed.stats.prompt_tokens
    assert resumed.stats.evaluated_tokens == prompt - restored < 40

    b.clear_state()
    full = next_reply(b, chat.conversation)
    assert full.stats.evaluated_tokens == full.stats.prompt_tokens == prompt
    assert resumed.text == full.text == chat.continued.text
    assert resumed.token_ids == full.token_ids


def test_backend_state_api(chat, backends, tmp_path):
    a, b = backends
    assert isinstance(a, StatefulBackend)
    hold(a, chat.ids)
    path = tmp_path / "state.kv"
    assert a.save_state(path) == len(chat.ids)
    assert path.stat().st_size == a.state_size()
    assert a.state_tokens(path) == chat.ids

    b.clear_state()
    assert b.cached_tokens == ()
    # Shares too little: nothing is loaded and the cache is untouched.
    assert b.restore_state(path, chat.ids[:10], min_tokens=64) == 0
    assert b.cached_tokens == ()
    # A prompt that leaves the conversation part-way keeps only the shared prefix.
    cut = len(chat.ids) // 2
    assert b.restore_state(path, [*chat.ids[:cut], 1, 2, 3]) == cut
    assert b.cached_tokens == tuple(chat.ids[:cut])


def test_restoring_what_the_model_already_holds_loads_nothing(chat, backends, cache):
    a, _ = backends
    hold(a, chat.ids)
    assert cache.restore(a, KEY, SHA, chat.ids) == len(chat.ids)
    assert "already" in cache.last_reason


def test_edited_first_message_is_not_restored(chat, backends, cache):
    _, b = backends
    edited = copy.deepcopy(chat.conversation)
    edited.turns[0].text = "Tell me about the sun."
    ids = resume_ids(Engine(b).template, edited)
    hold(b, ids[:5])
    assert cache.restore(b, KEY, SHA, ids) == 0
    assert "match" in cache.last_reason
    assert b.cached_tokens == tuple(ids[:5])  # untouched
    assert [entry.key for entry in cache.entries()] == [KEY]  # still good for the original


def test_edited_later_message_restores_the_shared_prefix(chat, backends, cache):
    _, b = backends
    edited = copy.deepcopy(chat.conversation)
    edited.turns[-2].text = "Write a haiku about it."  # the last user message
    ids = resume_ids(Engine(b).template, edited)
    b.clear_state()
    restored = cache.restore(b, KEY, SHA, ids)
    shared = next(i for i, (x, y) in enumerate(zip(ids, chat.ids, strict=False)) if x != y)
    assert restored == shared > 64
    resumed = next_reply(b, edited)
    assert resumed.stats.evaluated_tokens == resumed.stats.prompt_tokens - shared
    b.clear_state()
    assert next_reply(b, edited).text == resumed.text


def test_another_model_is_not_restored(chat, backends, cache):
    _, b = backends
    b.clear_state()
    assert cache.restore(b, KEY, OTHER_SHA, chat.ids) == 0
    assert "another model" in cache.last_reason
    assert cache.restore(b, KEY, None, chat.ids) == 0  # unknown: never guess
    assert "unknown" in cache.last_reason
    assert not cache.save(b, KEY, None)
    assert b.cached_tokens == ()
    assert [entry.key for entry in cache.entries()] == [KEY]


@pytest.mark.parametrize("fix_sidecar", [False, True])
def test_truncated_state_falls_back_and_is_deleted(chat, backends, cache, fix_sidecar):
    _, b = backends
    state = cache.directory / f"{KEY}.kv"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    hold(b, chat.ids[:5])
    with pytest.raises(StateError, match="truncated"):
        b.restore_state(state, chat.ids)
    assert b.cached_tokens == tuple(chat.ids[:5])  # refused before anything was loaded
    if fix_sidecar:  # the sidecar agrees, so the state file itself must be caught
        sidecar = cache.directory / f"{KEY}.json"
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "size": len(data) // 2}))
    assert cache.restore(b, KEY, SHA, chat.ids) == 0
    assert "truncated" in cache.last_reason
    assert files(cache.directory) == []
    assert b.cached_tokens == tuple(chat.ids[:5])


def test_damaged_state_is_refused_before_llama_cpp_sees_it(chat, backends, cache):
    _, b = backends
    state = cache.directory / f"{KEY}.kv"
    data = bytearray(state.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    state.write_bytes(bytes(data))
    hold(b, chat.ids[:5])
    assert cache.restore(b, KEY, SHA, chat.ids) == 0
    assert "checksum" in cache.last_reason
    assert b.cached_tokens == ()  # cleared, not half-loaded
    assert files(cache.directory) == []


def test_state_from_another_model_is_refused_by_llama_cpp(chat, backends, cache, tiny_backends):
    """A file whose sidecar and tokens say "demo model", holding a tiny Gemma 2's KV
    cache: it reaches llama.cpp, which must refuse it without crashing, and the backend
    is left empty and still gives the right reply."""
    _, b = backends
    tiny = tiny_backends["runaway"]
    hold(tiny, [2, 106, 300, 301, 302])
    state = cache.directory / f"{KEY}.kv"
    kv_state.write_state(tiny.llama._ctx.ctx, state, chat.saved)  # demo ids, tiny state
    sidecar = cache.directory / f"{KEY}.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "size": state.stat().st_size}))
    hold(b, chat.ids[:5])
    assert cache.restore(b, KEY, SHA, chat.ids) == 0
    assert "refused" in cache.last_reason
    assert b.cached_tokens == ()
    assert files(cache.directory) == []
    assert next_reply(b, chat.conversation).text == chat.continued.text


def test_disabled_cache_saves_and_restores_nothing(chat, backends, tmp_path):
    a, b = backends
    hold(a, chat.ids)
    for settings in (KVCacheSettings(enabled=False, min_tokens=64), KVCacheSettings(max_mb=0)):
        off = KVStateCache(settings, tmp_path / "kv")
        assert not off.save(a, KEY, SHA)
        assert "off" in off.last_reason
        assert not (tmp_path / "kv").exists()
    disabled = KVStateCache(KVCacheSettings(enabled=False), tmp_path / "kv")
    assert disabled.restore(b, KEY, SHA, chat.ids) == 0


def test_short_conversation_is_not_saved(chat, backends, tmp_path):
    a, _ = backends
    hold(a, chat.ids)
    short = KVStateCache(KVCacheSettings(min_tokens=len(chat.ids) + 1), tmp_path / "kv")
    assert not short.save(a, KEY, SHA)
    assert "min_tokens" in short.last_reason
    assert not (tmp_path / "kv").exists()


def test_another_conversation_in_the_model_is_not_saved(chat, backends, tmp_path):
    a, _ = backends
    hold(a, chat.ids)
    other = Conversation(system="You are a pirate.")
    other.add_user(QUESTIONS[0])
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert not cache.save(a, KEY, SHA, resume_ids(Engine(a).template, other))
    assert "does not hold this conversation" in cache.last_reason


def test_eviction_keeps_the_most_recently_used(chat, backends, tmp_path):
    a, b = backends
    hold(a, chat.ids)
    size = a.state_size()
    max_mb = math.ceil((2 * size + 8192) / MB)  # two entries fit, three do not
    assert max_mb * MB < 3 * size
    cache = KVStateCache(KVCacheSettings(min_tokens=64, max_mb=max_mb), tmp_path / "kv")
    assert cache.save(a, "first", SHA) and cache.save(a, "second", SHA)
    b.clear_state()
    assert cache.restore(b, "first", SHA, chat.ids) > 0  # "first" is now the fresher
    assert cache.save(a, "third", SHA)
    assert [entry.key for entry in cache.entries()] == ["first", "third"]
    assert "second.kv" not in files(cache.directory)
    assert cache.total_bytes() <= max_mb * MB

    small = KVStateCache(KVCacheSettings(min_tokens=64, max_mb=1), tmp_path / "small")
    assert size > MB and not small.save(a, KEY, SHA)
    assert "larger than max_mb" in small.last_reason


def test_save_is_atomic(chat, backends, tmp_path, monkeypatch):
    a, b = backends
    hold(a, chat.ids)
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert cache.save(a, KEY, SHA)
    assert files(cache.directory) == [f"{KEY}.json", f"{KEY}.kv"]
    first = (cache.directory / f"{KEY}.kv").read_bytes()

    # A save that dies half-way (here: the disk fills up) leaves the old entry intact.
    real_write = kv_state.write_state

    def half_write(ctx, path, tokens):
        real_write(ctx, path, tokens)
        with open(path, "r+b") as file:
            file.truncate(path.stat().st_size // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    hold(a, [*chat.ids, *chat.ids[1:20]])  # a different state, so it is not "unchanged"
    monkeypatch.setattr(kv_state, "write_state", half_write)
    assert not cache.save(a, KEY, SHA)
    assert "No space left" in cache.last_reason
    assert files(cache.directory) == [f"{KEY}.json", f"{KEY}.kv"]
    assert (cache.directory / f"{KEY}.kv").read_bytes() == first
    b.clear_state()
    assert cache.restore(b, KEY, SHA, chat.ids) == len(chat.ids)

    # Leftovers of a killed save are never loaded and are swept once stale; a recent
    # one may be another process's save in progress and stays.
    monkeypatch.setattr(kv_state, "write_state", real_write)
    stale, recent = cache.directory / f".{KEY}.dead.tmp", cache.directory / ".x.live.tmp"
    stale.write_bytes(first[:1000])
    recent.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert cache.save(a, "another", SHA)
    assert not stale.exists() and recent.exists()


def test_unchanged_state_is_not_written_again(chat, backends, cache):
    a, _ = backends
    hold(a, chat.saved)
    state = cache.directory / f"{KEY}.kv"
    before = state.stat().st_mtime_ns
    assert cache.save(a, KEY, SHA, chat.ids)
    assert "unchanged" in cache.last_reason
    assert state.stat().st_mtime_ns == before


def test_forget_and_total_size(cache):
    total = cache.total_bytes()
    assert total == sum(path.stat().st_size for path in cache.directory.iterdir()) > MB
    assert cache.forget(KEY)
    assert cache.total_bytes() == 0 and cache.entries() == []
    assert not cache.forget(KEY)


def test_unreadable_sidecar_means_no_entry(chat, backends, cache):
    _, b = backends
    (cache.directory / f"{KEY}.json").write_text("{not json")
    assert cache.entries() == []
    assert cache.restore(b, KEY, SHA, chat.ids) == 0
    assert "no saved state" in cache.last_reason


def test_scripted_backend_has_no_state(demo_path, chat, tmp_path):
    backend = ScriptedBackend(load_vocab(demo_path), ["Hi."])
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert not cache.save(backend, KEY, SHA)
    assert "cannot" in cache.last_reason
    assert cache.restore(backend, KEY, SHA, chat.ids) == 0


def test_no_save_or_restore_during_a_generation(chat, backends, cache):
    a, _ = backends
    tokens = a.generate(chat.ids, GREEDY, 1)
    next(tokens)
    try:
        assert not cache.save(a, "busy", SHA)
        assert "generation is running" in cache.last_reason
        assert cache.restore(a, KEY, SHA, chat.ids) == 0
        assert "generation is running" in cache.last_reason
    finally:
        tokens.close()
    assert [entry.key for entry in cache.entries()] == [KEY]  # not deleted for that


def test_save_keeps_only_the_prefix_the_next_prompt_repeats(chat, backends, tmp_path):
    a, _ = backends
    hold(a, [*chat.ids, *chat.ids[1:9]])  # e.g. a reply's trailing whitespace
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert cache.save(a, KEY, SHA, chat.ids)
    assert a.state_tokens(tmp_path / "kv" / f"{KEY}.kv") == chat.ids
    assert a.cached_tokens == tuple(chat.ids)  # the live cache was cut to match
    assert next_reply(a, chat.conversation).stats.evaluated_tokens < 40


def long_conversation() -> Conversation:
    """Scripted turns well past Gemma 3's 512-token sliding window."""
    conversation = Conversation(system="You are a patient maths teacher.")
    for n in range(1, 9):
        conversation.add_user(
            f"Question {n}: explain why {n} times {n + 1} is even, step by step, and give "
            f"one everyday example where we multiply {n} by {n + 1} without noticing."
        )
        conversation.add_model(
            f"Of two consecutive numbers such as {n} and {n + 1}, one is always even, and "
            f"an even number times anything is even, so {n} x {n + 1} = {n * (n + 1)} is "
            f"even. Example: {n} boxes of {n + 1} eggs make {n * (n + 1)} eggs.",
            StopReason.END_OF_TURN,
        )
    return conversation


def test_state_longer_than_the_sliding_window(backends, tmp_path):
    """llama.cpp saves only the last window of sliding-window layers: the state resumes
    exactly from its end, and refuses (falls back) when the conversation changed inside
    it, instead of attending to positions it no longer holds."""
    a, b = backends
    conversation = long_conversation()
    template = Engine(a).template
    ids = resume_ids(template, conversation)
    assert len(ids) > 700
    hold(a, ids)
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert cache.save(a, "long", SHA, ids)

    b.clear_state()
    assert cache.restore(b, "long", SHA, ids) == len(ids)
    resumed = next_reply(b, conversation)
    assert resumed.stats.evaluated_tokens < 40
    b.clear_state()
    assert next_reply(b, conversation).text == resumed.text

    edited = copy.deepcopy(conversation)
    edited.turns[-2].text = "One more question: why is 9 times 10 even?"
    edited_ids = resume_ids(template, edited)
    hold(b, edited_ids[:5])
    assert cache.restore(b, "long", SHA, edited_ids) == 0
    assert "sliding-window" in cache.last_reason
    assert b.cached_tokens == tuple(edited_ids[:5])
    assert [entry.key for entry in cache.entries()] == ["long"]  # still good for the end


def test_resume_ids_is_the_prefix_of_the_next_prompt(backends, chat):
    a, _ = backends
    template = Engine(a).template
    following = copy.deepcopy(chat.conversation)
    following.add_user(NEXT)
    assert template.render(following.turns, following.system)[: len(chat.ids)] == chat.ids
    assert resume_ids(template, following) == template.render_conversation(following)


def test_gemma2_state_round_trip(tiny_models, tiny_backends, tmp_path):
    """The Gemma 2 code path (its own cache layout), on a tiny model."""
    a = tiny_backends["runaway"]
    engine = Engine(a, GREEDY)
    conversation = Conversation(system="Be brief.")
    for n in range(3):
        conversation.add_user(f"Tell me story number {n}, please, with a happy ending. " * 2)
        engine.reply(conversation)
    ids = resume_ids(engine.template, conversation)
    cache = KVStateCache(SETTINGS, tmp_path / "kv")
    assert cache.save(a, KEY, SHA, ids), cache.last_reason
    # Another context size, too: a state fits any context that can hold its tokens.
    b = LlamaBackend(tiny_models["runaway"].path, n_ctx=1024, offload=OffloadPlan(0, "cpu"))
    try:
        # The state ends with the reply: its <end_of_turn> was sampled, never evaluated.
        restored = cache.restore(b, KEY, SHA, ids)
        assert restored == len(ids) - 2 > 200, cache.last_reason
        resumed = next_reply(b, conversation)
        assert resumed.text == " Once upon a time."
        assert resumed.stats.evaluated_tokens == resumed.stats.prompt_tokens - restored
    finally:
        b.close()


def test_cache_module_imports_neither_llama_nor_textual():
    code = (
        "import sys, gemma_chat.backend.kv_cache; "
        "bad = [m for m in ('textual', 'llama_cpp') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
