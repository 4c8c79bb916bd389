"""The first run: the welcome panel above an empty conversation names the model and says
whether it is a base or an instruction-tuned one (read from the real GGUF by llama.cpp's
probe), and for a base model how to get a real one; the model picker hints at ``pull``
when nothing instruction-tuned is found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tinygemma import build_tiny_gemma2
from tui_support import send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.models.resolve import inspect_model
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.models import NO_CHAT_MODEL, ModelPicker
from gemma_chat.tui.widgets.welcome import WelcomePanel


def loader_for(path: Path, vocab):
    """A loader that reads the real file's metadata with llama.cpp's probe, and replies
    from a script (what the panel says depends on the metadata alone)."""

    def load(settings, notify):
        return inspect_model(path), ScriptedBackend(vocab, ["Hi."], model=path.name)

    return load


def panel_text(app: GemmaChatApp) -> str:
    panel = app.query_one(WelcomePanel)
    return str(panel.render()) if panel.display else ""


async def test_a_base_model_is_named_and_a_real_one_suggested(demo_path, vocab) -> None:
    app = GemmaChatApp(Settings(), loader=loader_for(demo_path, vocab))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        text = panel_text(app)
        assert "Gemma 3 270m (gemma-3-270m-q4_k_m.gguf) is a base model" in text
        assert "no chat template" in text  # how it was decided
        for way in ("gemma-chat pull gemma2:2b", "/model", "gemma-chat --model PATH"):
            assert way in text
        assert app.query_one(WelcomePanel).kind == "base"
        # The panel goes with the first message and comes back with a new conversation.
        await send(pilot, "2+2=")
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        await settle(pilot)
        assert panel_text(app) == ""
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert "is a base model" in panel_text(app)


async def test_an_instruction_tuned_model_is_ready_to_chat(tmp_path: Path, vocab) -> None:
    tuned = build_tiny_gemma2(
        tmp_path / "tiny.gguf", ("▁Hi",), metadata={"general.finetune": "it"}
    ).path
    app = GemmaChatApp(Settings(), loader=loader_for(tuned, vocab))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        text = panel_text(app)
        assert "tinygemma2 (tiny.gguf) is an instruction-tuned model, ready to chat" in text
        assert "pull" not in text and "F1 help" in text


async def test_no_panel_before_a_model_is_loaded(tmp_path: Path) -> None:
    app = GemmaChatApp(Settings(model=str(tmp_path / "broken.gguf")))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app._loading is None)
        await settle(pilot)
        assert panel_text(app) == ""


@pytest.mark.slow
async def test_the_picker_hints_at_pull_when_no_chat_model(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_models["runaway"].path, folder / "story-teller.gguf")
    monkeypatch.setenv("GEMMA_CHAT_MODELS_DIR", str(folder))

    async def picker_status(app: GemmaChatApp, pilot) -> str:
        await send(pilot, "/model")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker))
        picker = app.screen
        await wait_until(pilot, lambda: bool(picker.choices), timeout=30)
        await settle(pilot)
        status = str(picker.query_one("#models-status").render())
        await pilot.press("escape")
        await settle(pilot)
        return status

    app = GemmaChatApp(Settings(model=str(folder / "story-teller.gguf")))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        status = await picker_status(app, pilot)
        assert "No instruction-tuned model found" in status and "gemma-chat pull" in status
        assert NO_CHAT_MODEL.startswith("No instruction-tuned model found")
        shutil.copy(tiny_models["runaway"].path, folder / "story-teller-it.gguf")
        status = await picker_status(app, pilot)
        assert "No instruction-tuned" not in status and "found" in status
