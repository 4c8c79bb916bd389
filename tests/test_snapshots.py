"""SVG snapshots of the key screens (pytest-textual-snapshot). Update them after an
intended visual change with ``pytest tests/test_snapshots.py --snapshot-update`` and
look at the report before committing."""

from __future__ import annotations

import pytest
from tui_support import scripted_loader, send, wait_until

from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp

REPLY = """Here is a short example:

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

- it is **typed**
- it returns a string"""


def app_with(vocab, theme: str) -> GemmaChatApp:
    return GemmaChatApp(Settings(), loader=scripted_loader(vocab, [REPLY]), theme=theme)


async def one_exchange(pilot) -> None:
    app = pilot.app
    app.prompt.cursor_blink = False
    await wait_until(pilot, lambda: app.engine is not None)
    await send(pilot, "Show me a Python greeting function")
    await wait_until(pilot, lambda: any(t.role is Role.MODEL for t in app.conversation.turns))
    await pilot.pause(0.3)
    app.status.set_speed("TTFT 0.05s · 42.0 tok/s")  # timings vary; fix them for the picture
    await pilot.pause()


@pytest.mark.parametrize("theme", ["gemma-dark", "gemma-light"])
def test_main_screen(snap_compare, vocab, theme: str) -> None:
    assert snap_compare(app_with(vocab, theme), terminal_size=(80, 24), run_before=one_exchange)


def test_help_screen(snap_compare, vocab) -> None:
    async def open_help(pilot) -> None:
        await one_exchange(pilot)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(app_with(vocab, "gemma-dark"), terminal_size=(80, 24), run_before=open_help)


SMALL = [(80, 24), (70, 20)]


@pytest.mark.parametrize("size", SMALL, ids=["80x24", "70x20"])
def test_small_main_screen(snap_compare, vocab, size) -> None:
    assert snap_compare(app_with(vocab, "gemma-dark"), terminal_size=size, run_before=one_exchange)


@pytest.mark.parametrize("size", SMALL, ids=["80x24", "70x20"])
def test_small_settings(snap_compare, vocab, size) -> None:
    async def open_settings(pilot) -> None:
        await one_exchange(pilot)
        await pilot.press("f2")
        await pilot.pause(0.3)

    assert snap_compare(app_with(vocab, "gemma-dark"), terminal_size=size, run_before=open_settings)


@pytest.mark.parametrize("size", SMALL, ids=["80x24", "70x20"])
def test_small_sidebar(snap_compare, vocab, size, tmp_path) -> None:
    from gemma_chat.history.store import HistoryStore, MessageRecord

    store = HistoryStore(tmp_path / "history.db")
    for title, origin in (("Plan a trip to Lisbon next spring", "app"), ("git log?", "ask")):
        cid = store.create(title=title, origin=origin)
        store.add(cid, MessageRecord("user", title))
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, [REPLY]), store=store)

    async def open_sidebar(pilot) -> None:
        await one_exchange(pilot)
        await pilot.press("ctrl+b")
        await pilot.pause(0.3)

    try:
        assert snap_compare(app, terminal_size=size, run_before=open_sidebar)
    finally:
        store.close()
