"""Unit tests of the incremental decoders (pure; the real-path tests are in
test_engine_stops.py)."""

from __future__ import annotations

import pytest

from gemma_chat.repetition import RepetitionDetector
from gemma_chat.settings import RepeatGuard
from gemma_chat.textstream import MarkerFilter, Utf8Stream


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


def test_varied_text_never_fires() -> None:
    guard = RepetitionDetector(RepeatGuard())
    tokens = [(i * 7919) % 1000 for i in range(2000)]
    assert not any(guard.add(token) for token in tokens)


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
    from gemma_chat.markdown_blocks import split_finished

    done, rest = split_finished(text)
    assert done == finished and done + rest == text
