"""Unit tests of the incremental decoders (pure; the real-path tests are in
test_engine_stops.py)."""

from __future__ import annotations

import itertools

import pytest

from gemma_chat.backend.local import load_vocab
from gemma_chat.chat.tokenizer import END_OF_TURN, START_OF_TURN
from gemma_chat.config.settings import RepeatGuard
from gemma_chat.generation.repetition import RepetitionDetector
from gemma_chat.generation.textstream import TEXT_MARKERS, MarkerFilter, Utf8Stream


def test_utf8_holds_split_characters_until_complete() -> None:
    stream = Utf8Stream()
    data = "中文🦙".encode()
    out = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) == "中文🦙"
    assert all("\ufffd" not in part for part in out)
    assert out[0] == out[1] == "" and out[2] == "中"


def test_utf8_drops_an_unfinished_character_at_the_end() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"ok\xe4\xb8") == "ok"
    assert stream.finish() == ""


def test_utf8_replaces_invalid_bytes_at_once() -> None:
    assert Utf8Stream().feed(b"a\xffb") == "a\ufffdb"


@pytest.mark.parametrize(
    ("chunks", "shown", "found"),
    [
        (["Hello", " <", "end_of", "_turn>", " user"], "Hello ", "<end_of_turn>"),
        (["x<start_of_turn>model"], "x", "<start_of_turn>"),
        (["a <", "b"], "a <b", None),
        (["<", "<end_of_turn>"], "<", "<end_of_turn>"),
        (["if a <= b"], "if a <= b", None),
    ],
)
def test_marker_filter(chunks: list[str], shown: str, found: str | None) -> None:
    markers = MarkerFilter()
    out = "".join(markers.feed(chunk) for chunk in chunks) + markers.flush()
    assert out == shown
    assert markers.found == found


def test_marker_filter_releases_as_soon_as_it_cannot_be_a_marker() -> None:
    markers = MarkerFilter()
    assert markers.feed("a <end_of") == "a "
    assert markers.holding
    assert markers.feed("f") == "<end_off"
    assert not markers.holding


def test_repetition_detector_fires_on_a_loop_only() -> None:
    guard = RepetitionDetector(RepeatGuard(min_tokens=12, min_repeats=3))
    fired = [guard.add(token) for token in [1, 2, 3, 4, 5, 6, 7, 8] + [9, 10] * 20]
    assert not any(fired[:8])
    assert fired.index(True) == 8 + 12 - 1  # 12 tokens of the loop, 6 copies of [9, 10]


def test_repetition_detector_long_period_needs_whole_copies() -> None:
    guard = RepetitionDetector(RepeatGuard(min_tokens=10, min_repeats=3, max_period=50))
    span = list(range(100, 120))  # 20 tokens
    fired = [guard.add(token) for token in span * 3]
    assert fired.index(True) == 59  # the third whole copy completes at 60 tokens


def test_repetition_detector_disabled() -> None:
    guard = RepetitionDetector(RepeatGuard(enabled=False))
    assert not any(guard.add(1) for _ in range(500))


@pytest.fixture(scope="module")
def demo_vocab(demo_path):
    """The demo model's real tokenizer (Gemma 3): digits are single tokens, so counted
    text repeats the same tokens the way a model's output does."""
    return load_vocab(demo_path)


# Ordinary replies that repeat words, phrases and whole line shapes, but never one span
# with nothing new: each line or cell brings a new number or word.
VARIED_TEXTS = {
    "counted words": " ".join(f"word{i}" for i in range(150)),
    "numbered list": "\n".join(f"{i}. Add item number {i} to the list." for i in range(1, 90)),
    "bullet list": "\n".join(
        f"- [ ] Review `{name}.py` (part {part}) and merge it."
        for part in range(1, 4)
        for name in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    ),
    "table": "| n | square | cube |\n|---|---|---|\n"
    + "\n".join(f"| {n} | {n * n} | {n**3} |" for n in range(1, 70)),
    "code": "def fill(values):\n"
    + "\n".join(f"    values[{i}] = values[{i - 1}] + {i}" for i in range(1, 70))
    + "\n    return values\n",
    "prose": " ".join(
        f"On day {day} we walked to the {place} and the weather was {weather} again."
        for day, (place, weather) in enumerate(
            itertools.product(("river", "market", "hill", "old mill"), ("fine", "wet", "cold")),
            start=1,
        )
    ),
}


@pytest.mark.parametrize("name", VARIED_TEXTS)
def test_varied_text_never_fires(demo_vocab, name: str) -> None:
    tokens = demo_vocab.tokenize(VARIED_TEXTS[name])
    assert len(tokens) > 2 * RepeatGuard().min_tokens  # long enough to matter
    guard = RepetitionDetector(RepeatGuard())
    fired = [guard.add(token) for token in tokens]
    assert True not in fired, f"fired at token {fired.index(True)} of {len(tokens)}"


def test_the_same_text_looping_does_fire(demo_vocab) -> None:
    # The other side of the texts above: a line that comes back with nothing new.
    tokens = demo_vocab.tokenize("1. Add item number 1 to the list.\n" * 20)
    guard = RepetitionDetector(RepeatGuard())
    assert any(guard.add(token) for token in tokens)


def chunked(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def shown_through_the_stream(
    chunks: list[bytes], markers: tuple[str, ...]
) -> tuple[str, str | None]:
    """Feed byte chunks through both decoders, as the engine does; return what was shown."""
    utf8, filt = Utf8Stream(), MarkerFilter(markers)
    shown = "".join(filt.feed(utf8.feed(chunk)) for chunk in chunks)
    shown += filt.feed(utf8.finish()) + filt.flush()
    return shown, filt.found


# Every sequence of two or three markers, with text before, between and after them.
SEVERAL_MARKERS = [
    seq for count in (2, 3) for seq in itertools.product((END_OF_TURN, START_OF_TURN), repeat=count)
]


@pytest.mark.parametrize(
    "markers", [TEXT_MARKERS, TEXT_MARKERS[::-1]], ids=["end-first", "start-first"]
)
@pytest.mark.parametrize("seq", SEVERAL_MARKERS, ids="+".join)
def test_several_markers_in_one_chunk_stop_at_the_earliest(
    seq: tuple[str, ...], markers: tuple[str, ...]
) -> None:
    before = "Fin, 中文 <b> <end_of"  # multi-byte text and a near-marker that is not one
    between = ("user\nTell more", "model\nSure", "x")
    text = before + "".join(m + between[i] for i, m in enumerate(seq))
    data = text.encode()
    # Whole, split in two at every byte, and one byte at a time.
    splits = [(), *((cut,) for cut in range(1, len(data))), tuple(range(1, len(data)))]
    for cuts in splits:
        shown, found = shown_through_the_stream(chunked(data, cuts), markers)
        assert (shown, found) == (before, seq[0]), cuts


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("Para one.\n\nPara two", "Para one.\n\n"),
        ("Para one.\n\n", ""),  # the next block has not started yet
        ("```\ncode\n\nmore\n", ""),  # blank line inside a fence
        ("```\ncode\n```\n\nAfter", "```\ncode\n```\n\n"),
        ("1. a\n\n2. b\n\nText", "1. a\n\n2. b\n\n"),  # a loose list stays whole
        ("1. Install:\n\n   ```bash\n   pip\n   ```\n", ""),  # indented continuation
        ("- a\n\n  - nested\n\nEnd", "- a\n\n  - nested\n\n"),
    ],
)
def test_markdown_blocks_split_only_where_safe(text: str, finished: str) -> None:
    from gemma_chat.chat.markdown_blocks import split_finished

    done, rest = split_finished(text)
    assert done == finished and done + rest == text
