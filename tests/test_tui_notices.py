"""Notifications and the input: none covers the input, they go quickly, and a notice
that no longer holds ("assembling the demo model…" once the model has loaded) is cleared."""

from __future__ import annotations

import threading

import pytest
from tui_support import notifications, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.notices import TIMEOUTS

ASSEMBLING = "assembling the demo model into /tmp/x.gguf (once)"
GPU_WARNING = "warning: this llama.cpp build has no GPU support; running on the CPU"


def gated_app(vocab) -> tuple[GemmaChatApp, threading.Event]:
    """An app whose loader reports progress and a warning, then waits for the test."""
    release = threading.Event()

    def load(settings, notify):
        notify(ASSEMBLING)
        notify(GPU_WARNING)
        release.wait(30)
        return None, ScriptedBackend(vocab, ["hi"])

    return GemmaChatApp(Settings(), loader=load), release


@pytest.mark.parametrize("size", [(80, 24), (70, 20)])
async def test_no_notification_covers_the_input(vocab, size) -> None:
    app, release = gated_app(vocab)
    release.set()
    async with app.run_test(size=size, notifications=True) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for index in range(6):
            severity = ("information", "warning", "error")[index % 3]
            app.notify(f"notice {index}: " + "a long line of text " * 5, severity=severity)
        await wait_until(pilot, lambda: len(app.screen.query("Toast")) >= 6)
        await settle(pilot)
        # Every cell of the input shows the input, never a toast on top of it.
        prompt = app.prompt.region
        assert prompt.area
        on_top = {
            type(app.screen.get_widget_at(x, y)[0]).__name__
            for x in range(prompt.x, prompt.right)
            for y in range(prompt.y, prompt.bottom)
        }
        assert on_top == {"PromptInput"}, on_top
        # ...while the toasts are on screen (above it).
        shown = {type(app.screen.get_widget_at(x, 3)[0]).__name__ for x in range(size[0])}
        assert "Toast" in shown, shown


async def test_timeouts_are_short(vocab) -> None:
    app, release = gated_app(vocab)
    release.set()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        app.notify("info", timeout=30)
        app.notify("warn", severity="warning", timeout=30)
        app.notify("err", severity="error", timeout=60)
        await settle(pilot)
        by_text = {n.message: n for n in app._notifications}
        assert by_text["info"].timeout <= TIMEOUTS["information"] <= 5
        assert by_text["warn"].timeout <= TIMEOUTS["warning"] <= 6
        assert by_text["err"].timeout <= TIMEOUTS["error"] <= 10
        assert by_text[GPU_WARNING].timeout <= 6  # the loader's warning (it was 10 s)


async def test_a_superseded_load_notice_is_cleared(vocab) -> None:
    app, release = gated_app(vocab)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_until(pilot, lambda: ASSEMBLING in notifications(app))
        assert app.engine is None
        release.set()
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        assert ASSEMBLING not in notifications(app)  # the model has loaded: it is over
        assert not any(ASSEMBLING in str(toast.render()) for toast in app.screen.query("Toast"))
