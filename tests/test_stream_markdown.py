"""A streamed reply's lists grow by their new items (issue 16, smooth streaming).

Pilot tests in a small host app: Markdown appended in small pieces (cut inside items, at
item ends, across a list growing past nine numbers, nested and loose lists) looks cell
by cell like the same text rendered whole, and an item added to an open list mounts only
that item: the rows already shown stay the same widgets.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Markdown

from gemma_chat.tui.widgets.flat_markdown import draw
from gemma_chat.tui.widgets.stream_markdown import StreamMarkdown

LISTS = "\n\n".join(
    [
        "## Lists that grow",
        "A paragraph with **bold** and `code` before the list.",
        "\n".join(f"- item {i}, *emphasis* and a [link](http://x.example/{i})" for i in range(6)),
        "Between the lists.",
        "\n".join(f"{i}. numbered item {i}, long enough to wrap at forty" for i in range(1, 13)),
        "- outer item\n  - nested one\n  - nested two\n- outer again",
        "- loose item one\n\n- loose item two\n\n  with a second paragraph\n\n- loose three",
        "- item with code\n\n  ```python\n  x = 1\n  ```\n- after the code",
        "The end.",
    ]
)


class Host(App):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield StreamMarkdown(id="streamed")
            yield Markdown(id="whole")


def cells(widget) -> list[list[tuple[str, object]]]:
    strips = draw(widget)
    assert strips is not None
    return [[(c, seg.style) for seg in strip for c in seg.text] for strip in strips]


async def streamed_and_whole(pieces: list[str]) -> tuple[list, list]:
    app = Host()
    async with app.run_test(size=(40, 200)) as pilot:
        streamed = app.query_one("#streamed", StreamMarkdown)
        whole = app.query_one("#whole", Markdown)
        for piece in pieces:
            await streamed.append(piece)
            await pilot.pause()
        await whole.update("".join(pieces))
        await pilot.pause()
        await pilot.pause()
        assert streamed.source == whole.source
        return cells(streamed), cells(whole)


def cut(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_lists_streamed_in_pieces_look_as_rendered_whole() -> None:
    for pieces in (cut(LISTS, 7), [line + "\n" for line in LISTS.split("\n")], cut(LISTS, 53)):
        streamed, whole = await streamed_and_whole(pieces)
        assert len(streamed) == len(whole) > 40
        for y, (line, expected) in enumerate(zip(streamed, whole, strict=True)):
            assert line == expected, y
    text = "\n".join("".join(char for char, _ in line) for line in streamed)
    assert "12. numbered item 12" in text and " 9. numbered item 9" in text
    assert "nested two" in text and "with a second paragraph" in text


async def test_an_item_added_to_an_open_list_mounts_only_that_item() -> None:
    app = Host()
    async with app.run_test(size=(40, 50)) as pilot:
        streamed = app.query_one("#streamed", StreamMarkdown)
        await streamed.append("Intro.\n\n- one\n- two\n- thr")
        await pilot.pause()
        rows = list(streamed.query(Horizontal))
        assert len(rows) == 3
        await streamed.append("ee\n- four\n- five")
        await pilot.pause()
        grown = list(streamed.query(Horizontal))
        assert len(grown) == 5
        assert grown[:3] == rows  # the same widgets: kept, the last one updated in place
        text = "\n".join(strip.text for strip in draw(streamed) or [])
        assert "three" in text and "five" in text
