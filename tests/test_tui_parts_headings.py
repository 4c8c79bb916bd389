"""A streamed reply cut into parts before a heading looks as shown whole (issue 16).

A heading has space of its own above it in Textual's Markdown (two lines for ``#`` and
``##``, one for the others). In one widget it overlaps the space below the block before
it; in two widgets it does not, and a part cut just before a heading showed a blank line
more. The reply streams token by token here (not as one backlog), so parts were closed
as each heading started, at the app's own part length (now after its first line).
"""

from __future__ import annotations

import pytest
from test_tui_segments_look import streamed_and_whole


def _reply(heading) -> str:
    return "\n\n".join(
        heading(level, f"Heading {n}")
        + "\n\n"
        + "\n".join(f"Line {i} of the paragraph of section {n}, plain text." for i in range(14))
        for n, level in enumerate([1, 2, 3, 2, 4, 1, 5, 6, 2], start=1)
    )


async def _streamed_looks_as_whole(vocab, text: str) -> None:
    parts, _, drawn, expected = await streamed_and_whole(vocab, text, delay_s=0.002)
    assert parts > 3  # closed into parts as it streamed
    text_drawn = ["".join(char for char, _ in line).rstrip() for line in drawn]
    assert text_drawn == ["".join(char for char, _ in line).rstrip() for line in expected]
    assert drawn == expected


async def test_parts_cut_before_headings_look_as_shown_whole(vocab) -> None:
    await _streamed_looks_as_whole(vocab, _reply(lambda level, title: f"{'#' * level} {title}"))


@pytest.mark.xfail(strict=True, reason="a setext heading is a paragraph until its underline")
async def test_parts_cut_before_setext_headings_look_as_shown_whole(vocab) -> None:
    # "Title" then "---" on the next line: the part is closed before "Title" while it is
    # still a paragraph; its underline, a line later, makes it a heading (space above).
    def setext(level: int, title: str) -> str:
        return f"{title}\n{'===' if level == 1 else '---'}"

    await _streamed_looks_as_whole(vocab, _reply(setext))
