"""The app's model picker (``/model`` with no path), on real files: real discovery, the
real memory planner, and a real llama.cpp load of the chosen model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import stories
from tui_support import send, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.models import ModelPicker
from gemma_chat.tui.widgets.chat_log import ModelReply, Notice
from gemma_chat.tui.widgets.user_message import UserMessage

pytestmark = pytest.mark.slow


@pytest.fixture
def models_dir(tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_models["runaway"].path, folder / "story-teller.gguf")
    shutil.copy(tiny_models["new_turn"].path, folder / "turn-taker.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF" + os.urandom(64))
    monkeypatch.setenv("GEMMA_CHAT_MODELS_DIR", str(folder))
    return folder


def picker_names(picker: ModelPicker) -> list[str]:
    return [choice.name for choice in picker.choices]


async def test_the_picker_lists_plans_and_loads_the_choice(models_dir: Path) -> None:
    app = GemmaChatApp(Settings(model=str(models_dir / "story-teller.gguf")))
    app.sampling = app.sampling.model_copy(update={"temperature": 0.0})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Tell me a story")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        await send(pilot, "/model")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker))
        picker = app.screen
        await wait_until(pilot, lambda: bool(picker.choices), timeout=30)
        choices = {choice.name: choice for choice in picker.choices}
        assert picker.choices[0].name == "story-teller" and picker.choices[0].current
        assert {"story-teller", "turn-taker", "broken"} <= set(choices)
        for name in ("story-teller", "turn-taker"):
            assert choices[name].error is None
            assert "gemma2" in choices[name].summary
            assert "RAM" in (choices[name].plan or ""), choices[name].plan  # a real plan
        assert choices["broken"].error and choices["broken"].plan is None
        listing = picker.query_one("#models-list")
        broken_index = picker_names(picker).index("broken")
        assert listing.get_option_at_index(broken_index).disabled
        # choose the other tiny model with the keyboard
        target = picker_names(picker).index("turn-taker")
        listing.highlighted = target
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: app.backend is not None and app.backend.info.model == "turn-taker.gguf",
            timeout=60,
        )
        await settle(pilot)
        # the conversation stayed
        assert [w.text for w in app.chat.query(UserMessage)] == ["Tell me a story"]
        assert len(app.query(ModelReply)) == 1 and len(app.conversation.turns) == 2
        assert "turn-taker.gguf" in str(app.query_one("#status-model").render())


async def test_escape_closes_the_picker_without_loading(models_dir: Path) -> None:
    app = GemmaChatApp(Settings(model=str(models_dir / "story-teller.gguf")))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        backend = app.backend
        await send(pilot, "/model")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker))
        await wait_until(pilot, lambda: bool(app.screen.choices), timeout=30)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ModelPicker) and app.backend is backend


@pytest.mark.parametrize("bad", ["broken.gguf", "missing.gguf"])
async def test_a_failed_model_switch_keeps_the_working_model(models_dir: Path, bad: str) -> None:
    """/model with a broken or missing file: the model that works stays loaded, with its
    settings and the conversation, and the next message is answered by it."""
    good = str(models_dir / "story-teller.gguf")
    app = GemmaChatApp(Settings(model=good))
    app.sampling = app.sampling.model_copy(update={"temperature": 0.0})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Tell me a story")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        backend, engine = app.backend, app.engine
        await send(pilot, f"/model {models_dir / bad}")
        await wait_until(pilot, lambda: bool(app.query(Notice)), timeout=60)
        notice = str(app.query_one(Notice).render())
        assert bad in notice and "Still using story-teller.gguf" in notice
        assert app.backend is backend and app.engine is engine
        assert app.settings.model == good  # Ctrl+G would reload the working model
        assert "story-teller.gguf" in str(app.query_one("#status-model").render())
        await send(pilot, "Another one")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 4)
        assert app.conversation.turns[-1].text == stories.RUNAWAY_REPLY
        assert [w.text for w in app.chat.query(UserMessage)] == ["Tell me a story", "Another one"]
