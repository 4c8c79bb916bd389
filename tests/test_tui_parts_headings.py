"""A streamed reply cut into parts before a heading looks as shown whole (issue 16).

A heading has space of its own above it in Textual's Markdown (two lines for ``#`` and
``##``, one for the others). In one widget it overlaps the space below the block before
it; in two widgets it does not, and a part cut just before a heading showed a blank line
more. The reply streams token by token here (not as one backlog), so parts were closed
as each heading started, at the app's own part length (now after its first line).
"""

from __future__ import annotations

from test_tui_flat import cells, flat_done, loader, settings
from tui_support import answered, send, settle, wait_until

from gemma_chat.chat.conversation import StopReason
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply

TEXT = "\n\n".join(
    f"{'#' * level} Heading {n}\n\n"
    + "\n".join(f"Line {i} of the paragraph of section {n}, plain text." for i in range(14))
    for n, level in enumerate([1, 2, 3, 2, 4, 1, 5, 6, 2], start=1)
)


async def test_parts_cut_before_headings_look_as_shown_whole(vocab) -> None:
    app = GemmaChatApp(settings(), loader=loader(vocab, [TEXT], delay_s=0.002))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await answered(pilot, 1)
        streamed = app.query_one(ModelReply)
        await wait_until(pilot, lambda: flat_done(streamed))
        assert len(streamed.segments) > 3  # closed into parts as it streamed
        whole = ModelReply(TEXT, StopReason.END_OF_TURN, speaker=streamed.speaker)
        await app.chat.mount(whole)
        await wait_until(pilot, lambda: flat_done(whole))
        await settle(pilot)
        drawn, expected = cells(streamed), cells(whole)
        text = ["".join(char for char, _ in line).rstrip() for line in drawn]
        want = ["".join(char for char, _ in line).rstrip() for line in expected]
        assert text == want
        assert drawn == expected
