"""The one sanitizer (gemma_chat/sanitize.py): examples, and Hypothesis properties over
any text (bounded example count; see the profile in conftest.py)."""

from __future__ import annotations

import json
import unicodedata

import pytest
from escapes import CORPUS, PAYLOADS, SHOWN
from hypothesis import given
from hypothesis import strategies as st

from gemma_chat.sanitize import StreamSanitizer, has_controls, json_safe, one_line, visible

# Text biased towards what matters: controls, CR/LF, C1, pictures, and ordinary text.
_SPECIAL = st.sampled_from(
    ["\x1b", "\x07", "\x08", "\r", "\n", "\r\n", "\t", "\x7f", "\x9b", "\x9d", "\x85",
     "\x00", "\u2028", "\u241b", "[", "]", "0;", " "]
)  # fmt: skip
TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(_SPECIAL, st.text(max_size=4)), max_size=30).map("".join),
)


def _is_control(char: str) -> bool:
    code = ord(char)
    return (code < 0x20 and char not in "\n\t") or 0x7F <= code <= 0x9F


@given(TEXT)
def test_visible_leaves_no_control_but_newline_and_tab(text: str) -> None:
    safe = visible(text)
    assert not any(_is_control(char) for char in safe)
    assert not has_controls(safe)
    assert visible(safe) == safe  # idempotent


@given(st.text(alphabet=st.characters(exclude_categories=("Cc",))))
def test_visible_is_the_identity_on_text_without_controls(text: str) -> None:
    # Cc is exactly C0, DEL and C1; newline and tab are in it too, and kept anyway.
    assert not has_controls(text)
    assert visible(text) == text


@given(TEXT)
def test_visible_keeps_every_line_and_shows_every_control(text: str) -> None:
    safe = visible(text)
    # CRLF is one line ending; every other control is shown by exactly one picture
    # (a C1 by ␛ and its 7-bit form), so nothing is dropped silently.
    plain = text.replace("\r\n", "\n")
    assert safe.count("\n") == plain.count("\n")
    controls = sum(_is_control(char) for char in plain)
    assert safe.count(SHOWN) >= sum(0x80 <= ord(c) <= 0x9F or c == "\x1b" for c in plain)
    pictures = sum(0x2400 <= ord(c) <= 0x2421 for c in safe) - sum(
        0x2400 <= ord(c) <= 0x2421 for c in plain
    )
    assert pictures == controls


@given(TEXT)
def test_one_line_has_no_line_break_and_no_control(text: str) -> None:
    line = one_line(text)
    assert not any(_is_control(char) for char in line)
    assert not any(char in line for char in "\n\r\t\x0b\x0c\x85\u2028\u2029")
    assert not any(unicodedata.category(char) == "Zl" for char in line)


@given(TEXT, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_stream_sanitizer_over_any_split_equals_visible_of_the_whole(
    text: str, cuts: list[int]
) -> None:
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    sanitizer = StreamSanitizer()
    streamed = "".join(sanitizer.feed(piece) for piece in pieces) + sanitizer.finish()
    assert streamed == visible(text)


@given(
    st.recursive(
        st.none() | TEXT,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TEXT, inner, max_size=6),
        max_leaves=24,
    )
)
def test_json_safe_is_lossless_and_leaves_no_control(value: object) -> None:
    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not has_controls(text.replace("\n", ""))


def test_examples() -> None:
    assert visible("a\x1b]0;T\x07b") == "a\u241b]0;T\u2407b"
    assert visible("\x9b2J") == "\u241b[2J"  # C1 CSI shown as what it stands for
    assert visible("x\r\ny\rz") == "x\ny\u240dz"
    assert one_line("a\n\n b\x1b[2J") == "a b\u241b[2J"
    for payload in PAYLOADS.values():
        assert not has_controls(visible(payload))
    assert SHOWN in visible(CORPUS)


def test_safe_stream_shows_controls_and_is_no_terminal() -> None:
    import io

    from gemma_chat.sanitize import SafeStream

    out = io.StringIO()
    stream = SafeStream(out)
    assert stream.write("a\x1b]0;T\x07b\r") == 9
    stream.writelines(["\n", "c\x9b2J"])
    stream.flush()
    assert out.getvalue() == "a\u241b]0;T\u2407b\n" + "c\u241b[2J"
    assert not stream.isatty() and stream.getvalue() == out.getvalue()


@pytest.mark.parametrize(
    ("char", "name"),
    [("\u202e", "RLO"), ("\u202a", "LRE"), ("\u2066", "LRI"), ("\u2069", "PDI"), ("\u200f", "RLM")],
)
def test_bidirectional_controls_are_shown_by_name(char: str, name: str) -> None:
    """A right-to-left override in a title made "t<RLO>eulb si yks" read "tsky is blue"
    in a terminal that lays out bidirectional text (Trojan Source): shown, never obeyed."""
    title = f"t{char}eulb si yks"
    assert visible(title) == f"t‹{name}›eulb si yks" == one_line(title)
    assert has_controls(title)
    stream = StreamSanitizer()
    assert stream.feed(title) == f"t‹{name}›eulb si yks"
    document = json.dumps({"title": title}, ensure_ascii=False)
    safe = json_safe(document)
    assert char not in safe and json.loads(safe) == {"title": title}  # lossless
