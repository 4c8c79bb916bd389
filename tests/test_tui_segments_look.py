"""A streamed reply, closed into parts as it streams, looks like the same reply shown whole
(issue 16, smooth streaming): the parts are cut only where Markdown's blocks end, and not
before a quote or a code block (two Markdown widgets do not overlap their blocks' margins
as one does), so the lines, their styles and the space between blocks are the same cell
by cell. Parts are closed every 2 lines here, for many cuts of every kind."""

from __future__ import annotations

from test_tui_flat import LONG, cells, flat_done, loader, settings
from tui_support import answered, send, settle, wait_until

from gemma_chat.chat.conversation import StopReason
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets import chat_log
from gemma_chat.tui.widgets.chat_log import ModelReply


async def streamed_and_whole(vocab, text: str, delay_s: float = 0.0):
    """``text`` streamed as a reply, then the same reply shown whole below it: (the parts
    the streamed reply was closed into, the whole one's, the streamed reply's cells, the
    whole one's cells)."""
    app = GemmaChatApp(settings(), loader=loader(vocab, [text], delay_s=delay_s))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await answered(pilot, 1)
        streamed = app.query_one(ModelReply)
        await wait_until(pilot, lambda: flat_done(streamed))
        whole = ModelReply(text, StopReason.END_OF_TURN, speaker=streamed.speaker)
        await app.chat.mount(whole)
        await wait_until(pilot, lambda: flat_done(whole))
        await settle(pilot)
        return len(streamed.segments), len(whole.segments), cells(streamed), cells(whole)


async def test_a_reply_streamed_in_parts_looks_as_shown_whole(vocab, monkeypatch) -> None:
    monkeypatch.setattr(chat_log, "SEGMENT_LINES", 2)
    parts, whole_parts, drawn, expected = await streamed_and_whole(vocab, LONG)
    assert parts > 6  # closed into parts as it streamed
    assert whole_parts == 1
    assert len(drawn) == len(expected) > 100
    for y, (line, want) in enumerate(zip(drawn, expected, strict=True)):
        assert line == want, y
