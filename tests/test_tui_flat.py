"""A long streamed reply, its finished parts drawn once (issue 16, smooth streaming).

Pilot tests on a scripted backend (the demo model's vocabulary): a reply long enough to
close several segments is streamed with and without flattening, and the lines the reply
shows are compared cell by cell (text and style); also after a resize and a theme
change, which draw the flat lines anew. The text is complete, escape sequences are shown
and never drawn, a stopped reply keeps its marker, and full garbage collections stay
held until the reply is rendered (not only generated).
"""

from __future__ import annotations

import asyncio
import gc

from escapes import CORPUS, SHOWN
from tui_support import scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.chat.markdown_blocks import slice_end
from gemma_chat.config.settings import Sampling, Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.sanitize import has_controls, visible
from gemma_chat.tui import gc_hold
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.gc_hold import HELD_THRESHOLD
from gemma_chat.tui.widgets.chat_log import (
    RAMP_COST,
    RENDER_COST,
    RENDER_SLICE,
    SEGMENT_LINES,
    ModelReply,
)
from gemma_chat.tui.widgets.flat_markdown import FlatSegment, draw


def _section(n: int) -> str:
    return "\n\n".join(
        [
            f"## {n}. Section with *emphasis* and `code`",
            f"A paragraph with **bold** text and a [link](http://evil.example/{n}) in it, "
            "long enough to wrap over more than one line at eighty columns wide.",
            "\n".join(f"- item {i} of the list, with `inline code`" for i in range(3)),
            "\n".join(f"{i}. numbered item {i}" for i in range(1, 4)),
            f"```python\ndef section_{n}(x: int) -> int:\n    return x * {n}  # comment\n```",
            "| name | value |\n|---|---|\n| alpha | 1 |\n| beta | 22 |",
            f"> A quote, then the hostile text: {CORPUS}",
        ]
    )


LONG = "\n\n".join(_section(n) for n in range(1, 7))
assert LONG.count("\n") > 4 * SEGMENT_LINES  # several segments close while it streams


def settings(**kwargs) -> Settings:
    return Settings(sampling=Sampling(max_tokens=12_000), **kwargs)


def loader(vocab, replies: list[str], delay_s: float = 0.0):
    return scripted_loader(vocab, replies, delay_s, n_ctx=16_384)


def cells(reply: ModelReply) -> list[list[tuple[str, object]]]:
    """The reply's lines as drawn, cell by cell: (character, style)."""
    strips = draw(reply)
    assert strips is not None
    return [
        [(char, segment.style) for segment in strip for char in segment.text] for strip in strips
    ]


def rendered(reply: ModelReply) -> bool:
    return reply.rendering is not None and reply.rendering.done()


def flat_done(reply: ModelReply) -> bool:
    return (
        (reply.rendering is None or reply.rendering.done())  # None: a reply given whole
        and bool(reply.query(FlatSegment))
        and not any(segment.display for segment in reply.segments)
    )


async def shown_both_ways(pilot, reply: ModelReply) -> tuple[list, list]:
    """The reply's cells as drawn flat, and with its Markdown widgets shown instead."""
    await wait_until(pilot, lambda: flat_done(reply))
    await settle(pilot)
    flat = reply.query_one(FlatSegment)
    assert flat.sources == reply.segments  # every part, the last one too
    drawn_flat = cells(reply)
    flat.display = False
    for segment in flat.sources:
        segment.display = True
    await settle(pilot)
    drawn_shown = cells(reply)
    for segment in flat.sources:
        segment.display = False
    flat.display = True
    await settle(pilot)
    return drawn_flat, drawn_shown


async def test_a_flattened_reply_looks_the_same(vocab) -> None:
    # Dark at 80x24, resized, in a light theme, selected: each draws the lines anew.
    app = GemmaChatApp(settings(theme="gemma-dark"), loader=loader(vocab, [LONG]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        reply = app.query_one(ModelReply)
        seen = []
        for change in (None, "resize", "theme", "selected"):
            if change == "resize":
                await pilot.resize_terminal(100, 30)
            elif change == "theme":
                app.theme = "gemma-light"
            elif change == "selected":  # as a click selects it: tinted, another border
                reply.can_focus = True
                reply.focus()
            await settle(pilot)
            flat, shown = await shown_both_ways(pilot, reply)
            assert len(flat) == len(shown) > 100
            for y, (line, expected) in enumerate(zip(flat, shown, strict=True)):
                assert line == expected, (change, y)
            seen.append(flat)
        # The text is complete: kept as it came, rendered sanitized, part after part.
        assert reply.text == LONG == app.conversation.turns[-1].text
        assert "".join(segment.source for segment in reply.segments) == visible(LONG)
        assert len(reply.segments) > 3
    assert len({len(lines[0]) for lines in seen}) == 2  # 80 and 100 columns wide
    assert seen[1] != seen[2] != seen[3]  # the theme's colours, the selection's tint
    text = "\n".join("".join(char for char, _ in line) for line in seen[0])
    assert "def section_6(x: int) -> int:" in text and "alpha" in text
    assert SHOWN in text and not has_controls(text)  # escapes shown, never drawn


async def test_a_resumed_reply_is_flat_and_looks_the_same(vocab, tmp_path) -> None:
    path = tmp_path / "history.db"
    with HistoryStore(path) as store:
        cid = store.create()
        store.add(cid, MessageRecord("user", "hi"))
        store.add(cid, MessageRecord("model", LONG, stop_reason="end_of_turn"))
    app = GemmaChatApp(
        settings(), loader=loader(vocab, ["ok"]), store=HistoryStore(path), resume=cid
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: bool(app.chat.query(ModelReply)))
        reply = app.chat.query_one(ModelReply)
        flat, shown = await shown_both_ways(pilot, reply)
        assert flat == shown and len(flat) > 100
        assert reply.text == LONG and reply.segments[0].source == visible(LONG)


async def test_a_stopped_long_reply_keeps_its_marker_and_its_text(vocab) -> None:
    app = GemmaChatApp(settings(), loader=loader(vocab, [LONG], delay_s=0.002))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        reply = app.query_one(ModelReply)
        await wait_until(pilot, lambda: reply.text.count("\n") > 3 * SEGMENT_LINES)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        await wait_until(pilot, lambda: flat_done(reply))
        turn = app.conversation.turns[-1]
        assert turn.role is Role.MODEL and turn.stop_reason is StopReason.CANCELLED
        assert reply.text == turn.text and LONG.startswith(turn.text) and turn.text != LONG
        assert "".join(segment.source for segment in reply.segments) == visible(turn.text)
        await settle(pilot)
        text = "\n".join(strip.text for strip in draw(reply) or [])
        assert "■ stopped by you" in text


async def test_full_collections_are_held_until_the_reply_is_rendered(vocab, monkeypatch) -> None:
    monkeypatch.setattr(gc_hold, "GC_RELEASE_S", 0.01)  # let go as soon as it may
    gc.collect(0)  # an app of an earlier test that ended while holding lets go
    before = gc.get_threshold()
    assert before[2] != HELD_THRESHOLD
    app = GemmaChatApp(settings(), loader=loader(vocab, [LONG * 3]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        reply = app.query_one(ModelReply)
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        assert app.conversation.turns[-1].text == LONG * 3
        # The model is done, the screen is not: no full collection may start yet.
        await asyncio.sleep(0.05)
        assert reply.rendering is not None and not reply.rendering.done()
        assert gc.get_threshold()[2] == HELD_THRESHOLD
        await wait_until(pilot, lambda: rendered(reply))
        await wait_until(pilot, lambda: gc.get_threshold() == before)
        assert gc.get_freeze_count() == 0
        # A reply that ends with the app: nothing stays held after it.
        await send(pilot, "again")
        await wait_until(pilot, lambda: gc.get_threshold()[2] == HELD_THRESHOLD)
    gc.collect(0)  # a young collection: the hold sees that the app has ended
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_a_backlog_renders_in_slices_cut_by_their_cost(vocab, monkeypatch) -> None:
    # The model is done long before the screen: the reply renders its backlog a slice a
    # frame, each cut where slice_end says for the live part shown so far, starting
    # small, and smaller by what drawing a part flat costs in the frame it is drawn. A
    # slice that closes a part ends there: the rest comes in the next one. When the
    # model finishes (the footer's keys are built again) the slices start small again.
    seen: list[tuple[str, str, int, str, int]] = []  # (live, backlog, drawn, slice, taken)
    ramps: list[int] = []  # the slice's place in its ramp (1: the first, RAMP_COST)
    finished_at: list[int] = []  # slices written when the model finished
    write, finish = ModelReply.write, ModelReply.finish

    async def recorded(self: ModelReply, delta: str) -> int:
        live, backlog, drawn = self._live_text, self._pending, self._draw_cost
        ramps.append(self._slices)
        taken = await write(self, delta)
        seen.append((live, backlog, drawn, delta, taken))
        return taken

    def finished(self: ModelReply, stop_reason: StopReason) -> None:
        finished_at.append(len(ramps))
        finish(self, stop_reason)

    monkeypatch.setattr(ModelReply, "finish", finished)

    monkeypatch.setattr(ModelReply, "write", recorded)
    app = GemmaChatApp(settings(), loader=loader(vocab, [LONG * 2]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        reply = app.query_one(ModelReply)
        await wait_until(pilot, lambda: not app.generating and rendered(reply))
        assert "".join(piece[:taken] for *_, piece, taken in seen) == visible(LONG * 2)
        cut = closed = 0
        # Counted from 1 again after the model finished (when slices were still to come).
        [at] = finished_at
        assert ramps == list(range(1, at + 1)) + list(range(1, len(ramps) - at + 1))
        for index, (live, backlog, drawn, piece, taken) in enumerate(seen):
            budget = min(RENDER_COST - drawn, RAMP_COST * ramps[index])
            assert piece == backlog[: slice_end(live, backlog, RENDER_SLICE, budget)]
            cut += len(piece) < len(backlog)
            closed += taken < len(piece)
        assert cut > 5  # a backlog, cut
        assert closed > 3  # parts closed while it streamed...
        assert sum(drawn > 0 for *_, drawn, _, _ in seen) > 3  # ...and drawn flat at once
        assert all(taken for *_, taken in seen)
