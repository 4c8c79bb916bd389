"""Huge messages open promptly: the chat renders a bounded beginning, the whole text is
one key or click away in a plain view shown a part at a time, and quitting works
(Pilot, a real store file with a 5 MB message and a 5 MB reply)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import scripted_loader, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.whole_text import PART_CHARS, PART_LINES, WholeTextScreen, part_end
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.preview import PREVIEW_CHARS, PREVIEW_LINES, preview
from gemma_chat.tui.widgets.user_message import UserMessage

pytestmark = pytest.mark.timeout(120)  # without the bound, the app freezes for minutes

PROSE = "A plain sentence of prose that goes on, in a very long message. " * 7 + "\n\n"
NUMBERED = "".join(f"Paragraph {n}: a sentence of prose that goes on.\n\n" for n in range(100_000))
LIST = "- an item with **bold** and `code`\n"


def huge(unit: str, size: int = 5_000_000) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def test_preview_is_bounded_and_short_texts_are_whole() -> None:
    assert preview("short") is None
    assert preview("line\n" * (PREVIEW_LINES - 1)) is None
    many_lines = preview(huge(LIST))
    assert many_lines is not None and many_lines.count("\n") == PREVIEW_LINES - 1
    one_line = preview("x" * 10_000_000)
    assert one_line == "x" * PREVIEW_CHARS
    prose = preview(huge(PROSE))
    assert prose is not None and len(prose) <= PREVIEW_CHARS and prose.rstrip().endswith(".")
    assert huge(PROSE).startswith(prose)


def test_parts_cover_the_text_exactly() -> None:
    for text in (huge(PROSE, 100_000), huge(LIST, 100_000), "y" * 50_000, "z\n" * 5):
        start, parts = 0, []
        while start < len(text):
            end = part_end(text, start)
            assert start < end and end - start <= PART_CHARS
            assert text[start:end].count("\n") <= PART_LINES
            parts.append(text[start:end])
            start = end
        assert "".join(parts) == text


async def test_resuming_a_huge_conversation_is_prompt_and_shows_the_rest(
    vocab, tmp_path: Path
) -> None:
    question, answer = huge(LIST), huge(NUMBERED)
    path = tmp_path / "history.db"
    with HistoryStore(path) as store:
        cid = store.create()
        store.add(cid, MessageRecord("user", question))
        store.add(cid, MessageRecord("model", answer, stop_reason="end_of_turn"))
    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["ok"]), store=HistoryStore(path), resume=cid
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: bool(app.chat.query(ModelReply)), timeout=60)
        await settle(pilot)
        user, reply = app.chat.query_one(UserMessage), app.chat.query_one(ModelReply)
        assert user.text == question and reply.text == answer  # nothing is lost
        # Only a bounded beginning is rendered.
        (segment,) = reply.segments
        assert 0 < len(segment.source) <= PREVIEW_CHARS and answer.startswith(segment.source)
        assert len(str(user.render())) <= PREVIEW_CHARS + 200
        assert "more characters" in str(user.render())
        # The context meter is not counted token by token: a bound, marked estimated.
        await wait_until(pilot, lambda: "~" in str(app.query_one("#status-meter").render()))
        # The reply's button opens the whole text, a part at a time.
        button = reply.query_one(".show-whole")
        assert f"{len(answer) - len(segment.source):,} more characters" in str(button.label)
        await pilot.click(button)
        await wait_until(pilot, lambda: isinstance(app.screen, WholeTextScreen))
        screen = app.screen
        assert screen.text == answer and screen.part == answer[: len(screen.part)]
        first = screen.part
        await pilot.press("n")
        assert screen.part and answer[len(first) :].startswith(screen.part)
        assert "part 2," in str(screen.query_one("#whole-title").render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, WholeTextScreen))
        # The user message: focus it, Enter opens the whole message.
        user.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, WholeTextScreen))
        assert app.screen.text == question
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, WholeTextScreen))
        await pilot.press("ctrl+q")
    assert not app.is_running
