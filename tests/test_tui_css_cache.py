"""A reply's blocks styled with remembered rules look as Textual styles them (issue 16).

The app remembers the stylesheet rules of the blocks inside a reply's Markdown
(``gemma_chat/tui/css_cache.py``). The same long reply is streamed into an app with and
without that memory, in a dark theme and then in a light one (the rules change with the
theme), and its lines are compared cell by cell (text and style).
"""

from __future__ import annotations

from test_tui_flat import LONG, cells, flat_done, loader, settings
from tui_support import send, settle, wait_until

from gemma_chat.tui import replies
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply


async def _shown(vocab) -> tuple[list, list, int]:
    """The reply's cells in the dark theme, then in the light one, and the kinds of block
    the app remembered rules for."""
    app = GemmaChatApp(settings(theme="gemma-dark"), loader=loader(vocab, [LONG]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        app.theme = "gemma-dark"  # the first app's choice was kept for the next one
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        reply = app.query_one(ModelReply)
        await wait_until(pilot, lambda: flat_done(reply))
        await settle(pilot)
        dark = cells(reply)
        app.theme = "gemma-light"
        await settle(pilot)
        await wait_until(pilot, lambda: flat_done(reply))
        await settle(pilot)
        light = cells(reply)
        memo = getattr(app.stylesheet, "_gemma_memo", None)
        return dark, light, len(memo.entries) if memo is not None else 0


async def test_remembered_block_styles_look_as_textual_styles_them(vocab, monkeypatch) -> None:
    dark, light, remembered = await _shown(vocab)
    assert remembered > 10  # the memory was used: paragraphs, items, code, tables...
    monkeypatch.setattr(replies, "remember_block_styles", lambda stylesheet: None)
    plain_dark, plain_light, none = await _shown(vocab)
    assert none == 0
    assert len(dark) == len(plain_dark) > 100
    assert dark != light  # the theme's colours
    for y, (line, want) in enumerate(zip(dark, plain_dark, strict=True)):
        assert line == want, ("dark", y)
    for y, (line, want) in enumerate(zip(light, plain_light, strict=True)):
        assert line == want, ("light", y)


def test_the_memory_is_left_out_on_a_textual_it_does_not_know(monkeypatch) -> None:
    # It relies on Textual's own names and pseudo-classes: with others (here a new
    # pseudo-class, then a flag renamed) Textual styles every node itself, as before.
    from textual.css.stylesheet import Stylesheet

    from gemma_chat.tui import css_cache

    assert css_cache.supported()
    stylesheet = Stylesheet()
    pseudo = {*css_cache.VALID_PSEUDO_CLASSES, "nth-child"}
    for name, value in (("VALID_PSEUDO_CLASSES", pseudo), ("_FLAGS", ("_has_nth_style",))):
        with monkeypatch.context() as patch:
            patch.setattr(css_cache, name, value)
            css_cache.install(stylesheet)
            assert getattr(stylesheet, "_gemma_memo", None) is None
            assert "apply" not in vars(stylesheet)  # Textual's own
    css_cache.install(stylesheet)
    assert stylesheet._gemma_memo is not None and "apply" in vars(stylesheet)


async def test_remembered_styles_follow_the_apps_own_classes() -> None:
    # A rule may test a class of the app itself (Textual's own "-dark-mode", or one an
    # app sets): blocks mounted after the class changed are not served the old rules.
    from textual.app import App
    from textual.widgets import Markdown
    from textual.widgets._markdown import MarkdownParagraph

    from gemma_chat.tui import css_cache

    class Probe(App):
        CSS = "App.-loud Markdown MarkdownParagraph { text-style: bold; }"

        def compose(self):
            yield Markdown("one")

    app = Probe()
    async with app.run_test() as pilot:
        css_cache.install(app.stylesheet)
        app.stylesheet.update(app)  # a paragraph's rules remembered, not bold
        assert app.stylesheet._gemma_memo.entries
        app.add_class("-loud")
        await pilot.pause()
        await app.screen.mount(Markdown("two"))
        await app.query(Markdown).first().append("\n\nthree")
        await pilot.pause()
        paragraphs = list(app.query(MarkdownParagraph))
        assert len(paragraphs) == 3
        assert all(paragraph.styles.text_style.bold for paragraph in paragraphs)
