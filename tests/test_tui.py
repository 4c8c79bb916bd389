"""The TUI driven by Textual's Pilot: on a scripted backend (real Gemma 3 vocabulary,
replies replayed token by token), on the real demo model, and on a tiny Gemma 2 model
that runs away past <end_of_turn>."""

from __future__ import annotations

import asyncio

import pytest
import stories
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.help import HelpScreen
from gemma_chat.tui.widgets.chat_log import ModelReply, Notice
from gemma_chat.tui.widgets.user_message import UserMessage

LONG = " ".join(f"word{i}" for i in range(150))  # about 600 tokens
REPLY = "Hello **there**!\n\n```python\nprint('hi')\n```"


def make_app(vocab, replies=(REPLY,), delay_s=0.0, settings=None, **kwargs):
    loader = scripted_loader(vocab, replies, delay_s, n_ctx=kwargs.pop("n_ctx", 4096))
    app = GemmaChatApp(settings or Settings(), loader=loader, **kwargs)
    return app, loader


async def ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None)


async def reply_done(pilot, count: int = 1) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
    )


async def test_send_and_stream(vocab) -> None:
    app, _ = make_app(vocab, [LONG], delay_s=0.002)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        # Mid-stream: part of the reply is on screen, the rest is still coming.
        await wait_until(pilot, lambda: len(app.query_one(ModelReply).text) > 40)
        assert app.generating, app.last_done and app.last_done.stats
        assert "…" in str(app.query_one("#status-speed").render())  # live tok/s
        await reply_done(pilot)
        reply = app.query_one(ModelReply)
        assert reply.text == LONG
        assert app.conversation.turns[-1].stop_reason is StopReason.END_OF_TURN
        assert not reply.has_class("-stopped")
        assert [m.text for m in app.query(UserMessage)] == ["hello"]
        assert app.prompt.text == ""
        assert "tok/s" in str(app.query_one("#status-speed").render())


async def test_escape_stops_and_keeps_the_partial_reply(vocab) -> None:
    app, _ = make_app(vocab, [LONG], delay_s=0.01)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: len(app.query_one(ModelReply).text) > 20)
        await pilot.press("escape")
        await reply_done(pilot)
        turn = app.conversation.turns[-1]
        assert turn.stop_reason is StopReason.CANCELLED and turn.partial
        assert 20 < len(turn.text) < len(LONG) and LONG.startswith(turn.text)
        reply = app.query_one(ModelReply)
        assert reply.has_class("-stopped")
        assert "stopped by you" in str(reply.query_one(".stop-marker").render())


async def test_ctrl_c_stops_and_never_quits(vocab) -> None:
    app, _ = make_app(vocab, [LONG], delay_s=0.01)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+c")  # nothing running: still must not quit
        assert app.is_running
        await send(pilot, "go")
        await wait_until(pilot, lambda: len(app.query_one(ModelReply).text) > 10)
        await pilot.press("ctrl+c")
        await reply_done(pilot)
        assert app.is_running
        assert app.conversation.turns[-1].stop_reason is StopReason.CANCELLED


async def test_one_generation_at_a_time(vocab) -> None:
    app, _ = make_app(vocab, [LONG], delay_s=0.01)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "first")
        await wait_until(pilot, lambda: app.generating)
        await send(pilot, "second")
        assert app.prompt.text == "second"  # kept, not lost
        await wait_until(pilot, lambda: any("being generated" in n for n in notifications(app)))
        await pilot.press("escape")
        await reply_done(pilot)
        assert [t.text for t in app.conversation.turns if t.role is Role.USER] == ["first"]


async def test_retry_and_edit(vocab) -> None:
    app, _ = make_app(vocab, ["one", "two", "three"])
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "question")
        await reply_done(pilot)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "two")
        assert len(app.conversation.turns) == 2
        await wait_until(pilot, lambda: [r.text for r in app.query(ModelReply)] == ["two"])
        await send(pilot, "/retry")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "three")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert len(app.conversation.turns) == 2  # nothing goes until the edit is sent
        assert app.prompt.text == "question"
        await wait_until(pilot, lambda: len(app.query(ModelReply)) == 1)
        assert all(w.has_class("-editing") for w in app.query(".user-message, .model-reply"))


async def test_slash_commands(vocab) -> None:
    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "/temp 0.3")
        await send(pilot, "/set top_k 5")
        await send(pilot, "/set repeat_guard off")
        assert app.engine.sampling.temperature == 0.3 and app.engine.sampling.top_k == 5
        assert app.engine.repeat_guard.enabled is False
        await send(pilot, "/set top_k lots")
        assert any("top_k" in n for n in notifications(app))
        await send(pilot, "/system Be brief.")
        assert app.conversation.system == "Be brief."
        await send(pilot, "hi")
        await reply_done(pilot)
        await send(pilot, "/copy")
        assert app.clipboard == REPLY
        await send(pilot, "/copy code")
        assert app.clipboard == "print('hi')"
        await send(pilot, "/clear")
        await settle(pilot)
        assert app.conversation.turns == [] and app.conversation.system == "Be brief."
        assert app.sampling.temperature == 0.3
        await send(pilot, "/new")
        await settle(pilot)
        assert app.conversation.system is None and app.sampling.temperature == 1.0
        await send(pilot, "/bogus")
        assert any("unknown command /bogus" in n for n in notifications(app))
        await send(pilot, "/help")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await send(pilot, "//not a command")
        await reply_done(pilot)
        assert app.conversation.turns[0].text == "/not a command"
        await send(pilot, "/quit")
        await settle(pilot)
        assert not app.is_running


async def test_enter_key_sends(vocab) -> None:
    app, _ = make_app(vocab, ["one"])
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press(*"hi", "enter")
        await reply_done(pilot)
        assert [t.text for t in app.conversation.turns] == ["hi", "one"]


async def test_slash_completion_with_tab(vocab) -> None:
    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("/", "t", "e")
        await settle(pilot)
        hint = str(app.query_one("#completions").render())
        assert "/temp" in hint
        await pilot.press("tab")
        assert app.prompt.text == "/temp "


async def test_every_command_is_in_the_palette(vocab) -> None:
    from gemma_chat.chat.commands import COMMANDS

    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for command in COMMANDS:
            assert command.usage in titles


async def test_history_recall_with_up_and_down(vocab) -> None:
    app, _ = make_app(vocab, ["a", "b"])
    async with app.run_test() as pilot:
        await ready(pilot)
        for text in ("first", "second"):
            await send(pilot, text)
            await reply_done(pilot, 1 if text == "first" else 2)
        app.prompt.set_text("draft")
        await pilot.press("up")
        assert app.prompt.text == "second"
        await pilot.press("up")
        assert app.prompt.text == "first"
        await pilot.press("down", "down")
        assert app.prompt.text == "draft"


async def test_newline_keys_and_large_paste(vocab) -> None:
    from textual import events

    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("a", "ctrl+j", "b")
        assert app.prompt.text == "a\nb"
        big = "line of pasted text\n" * 5000
        app.prompt.post_message(events.Paste(big))
        await settle(pilot)
        assert app.prompt.text.endswith(big)


async def test_context_meter_counts_as_you_type(vocab) -> None:
    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        meter = app.query_one("#status-meter")
        await wait_until(pilot, lambda: "/4,096" in str(meter.render()))
        empty = str(meter.render())
        app.prompt.set_text("a few more words to count")
        expected = app.engine.count_tokens(app.conversation, "a few more words to count")
        await wait_until(pilot, lambda: str(meter.render()) == f"ctx {expected}/4,096")
        assert str(meter.render()) != empty


async def test_gpu_toggle_on_a_cpu_build(vocab) -> None:
    app, loader = make_app(vocab, gpu_supported=lambda: False)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+g")
        await send(pilot, "/gpu on")
        messages = [n for n in notifications(app) if "no GPU support" in n]
        assert len(messages) == 2 and "-DGGML_CUDA=on" in messages[0]
        assert "CPU" in str(app.query_one("#status-device").render())
        assert len(loader.loads) == 1  # nothing was reloaded


async def test_gpu_toggle_reloads_and_keeps_the_conversation(vocab) -> None:
    app, loader = make_app(vocab, ["one", "two"], gpu_supported=lambda: True)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await reply_done(pilot)
        first = app.engine
        await send(pilot, "/gpu 12")
        await wait_until(pilot, lambda: app.engine is not first)
        assert loader.loads[-1].gpu is True and loader.loads[-1].gpu_layers == 12
        assert [t.text for t in app.conversation.turns] == ["hi", "one"]


async def test_failed_model_load_is_shown_and_recoverable(vocab) -> None:
    app, _ = make_app(vocab, settings=Settings(model="/models/broken.gguf"))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        notice = str(app.query_one(Notice).render())
        assert "not a GGUF model file: /models/broken.gguf" in notice
        assert app.is_running and app.engine is None
        await send(pilot, "hello")
        assert app.prompt.text == "hello"  # kept until a model is there
        app.prompt.clear()
        await send(pilot, "/model /models/good.gguf")
        await ready(pilot)
        assert "scripted.gguf" in str(app.query_one("#status-model").render())


async def test_keys_can_be_remapped(vocab) -> None:
    settings = Settings(keys={"gemma.retry": "f5", "gemma.nonsense": "f6"})
    app, _ = make_app(vocab, ["one", "two"], settings=settings)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert any("gemma.nonsense" in n for n in notifications(app))
        await send(pilot, "hi")
        await reply_done(pilot)
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "two")


async def test_a_change_that_arrives_as_the_app_shuts_down_is_dropped(vocab) -> None:
    # CI once saw the draft's TextArea.Changed handled after the last screen was gone:
    # refreshing the footer raised ScreenStackError and failed the run.
    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
    app.follow._stop_shown = True  # the footer showed Esc: this change would refresh it
    app.follow.changed()  # no screen left: nothing to update, and nothing raises


async def test_dropped_turns_are_notified(vocab) -> None:
    app, _ = make_app(vocab, [LONG], n_ctx=1024)
    async with app.run_test() as pilot:
        await ready(pilot)
        for count in range(1, 4):
            await send(pilot, f"question {count}")
            await reply_done(pilot, count)
        # Notifications arrive as messages (Notify): wait for it to be shown.
        await wait_until(
            pilot, lambda: any("old turns were left out" in n for n in notifications(app))
        )


async def test_a_reply_that_cannot_fit_gives_the_text_back(vocab) -> None:
    # long_input = "refuse": otherwise it is answered part by part (test_tui_attach.py).
    app, _ = make_app(vocab, n_ctx=256, settings=Settings(long_input="refuse"))
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, LONG)
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        assert "too long" in str(app.query_one(Notice).render())
        assert app.prompt.text == LONG and app.conversation.turns == []


@pytest.mark.slow
async def test_real_demo_model() -> None:
    app = GemmaChatApp(Settings(model="demo", ctx=1024))
    app.sampling = app.sampling.model_copy(update={"max_tokens": 12, "seed": 1})
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        assert "gemma-3-270m-q4_k_m.gguf" in str(app.query_one("#status-model").render())
        assert str(app.query_one("#status-quant").render()) == "· Q4_K_M"
        assert "CPU" in str(app.query_one("#status-device").render())
        await send(pilot, "Hello!")
        await reply_done(pilot)
        turn = app.conversation.turns[-1]
        assert turn.text.strip() and app.query_one(ModelReply).text == turn.text
        assert "tok/s" in str(app.query_one("#status-speed").render())


@pytest.mark.slow
async def test_gemma2_runaway_shows_exactly_the_reply(tiny_models) -> None:
    app = GemmaChatApp(Settings(model=str(tiny_models["runaway"].path)))
    app.sampling = app.sampling.model_copy(update={"temperature": 0.0})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Tell me a story")
        await reply_done(pilot)
        await settle(pilot)
        reply = app.query_one(ModelReply)
        assert reply.text == stories.RUNAWAY_REPLY
        assert app.conversation.turns[-1].stop_reason is StopReason.END_OF_TURN
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "Once upon a time." in screen
        for leaked in ("Tell more", "end_of_turn", "start_of_turn"):
            assert leaked not in screen


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "truncated", "malformed"])
async def test_model_errors_are_one_line(tmp_path, tiny_models, kind: str) -> None:
    """Real broken files through the app's real loader: the notice is the reason on one
    line (no traceback, no llama.cpp log), then the one line saying what to do."""
    from tinygemma import build_tiny_gemma2

    path = tmp_path / f"{kind}.gguf"
    if kind == "text":
        path.write_text("hello, not a model\n")
        problem = "not a GGUF model file"
    elif kind == "truncated":
        path.write_bytes(tiny_models["runaway"].path.read_bytes()[:5000])
        problem = "truncated or corrupt"
    else:  # duplicate vocabulary entries: llama.cpp itself aborts on them
        build_tiny_gemma2(path, ("▁Hi",), duplicate_token=True)
        problem = "malformed"
    app = GemmaChatApp(Settings(model=str(path)))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: bool(app.query(Notice)), timeout=60)
        reason, advice = str(app.query_one(Notice).render()).split("\n")
        assert reason.startswith("Could not load the model: ") and problem in reason
        assert str(path) in reason and "Traceback" not in reason
        assert advice == "Load another with /model PATH, or quit with Ctrl+Q."
        assert app.is_running and app.engine is None


async def test_theme_switch_is_remembered(vocab) -> None:
    from gemma_chat.config import ui_prefs as state

    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.theme == "gemma-dark"
        assert {"gemma-dark", "gemma-light", "gemma-dusk", "textual-dark"} <= set(
            app.available_themes
        )
        await send(pilot, "/theme gemma-light")
        assert app.theme == "gemma-light"
        await send(pilot, "/theme nope")
        assert any("Unknown theme" in n and "nope" in n for n in notifications(app)), notifications(
            app
        )
    assert state.load_state()["theme"] == "gemma-light"
    again, _ = make_app(vocab, settings=Settings(theme="gemma-dusk"))
    async with again.run_test() as pilot:
        await ready(pilot)
        assert again.theme == "gemma-light"  # the remembered choice wins over the config
    flagged, _ = make_app(vocab, theme="textual-light")
    async with flagged.run_test() as pilot:
        await ready(pilot)
        assert flagged.theme == "textual-light"  # --theme wins over everything


async def test_a_bad_theme_file_is_reported_once(vocab, tmp_path) -> None:
    themes = tmp_path / "themes"  # the config dir is tmp_path in tests
    themes.mkdir()
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "blurple"\n')
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#ff8800"\ndark = true\n')
    app, _ = make_app(vocab, settings=Settings(theme="broken"))
    async with app.run_test() as pilot:
        await ready(pilot)
        bad = [n for n in notifications(app) if "broken.toml" in n]
        assert len(bad) == 1 and "blurple" in bad[0]
        assert app.theme == "gemma-dark"  # the default instead of the broken one
        assert "mine" in app.available_themes


async def test_view_follows_only_while_at_the_bottom(vocab) -> None:
    # The second reply only has to grow past the screen while followed: half as long.
    app, _ = make_app(vocab, [LONG + "\n\n" + LONG, LONG], delay_s=0.004)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: app.chat.max_scroll_y > 10)
        app.chat.scroll_home(animate=False)  # the user scrolls up to read
        await asyncio.sleep(0.3)
        assert app.generating and app.chat.scroll_y == 0  # left where the user put it
        await reply_done(pilot)
        await settle(pilot)
        assert app.chat.scroll_y == 0
        app.chat.scroll_end(animate=False)
        await settle(pilot)
        await send(pilot, "again")
        await reply_done(pilot, 2)
        # Following again (waited for: a loaded machine lays out late).
        await wait_until(pilot, lambda: app.chat.scroll_y == app.chat.max_scroll_y)


async def test_settings_modal_edits_system_prompt_and_parameters(vocab) -> None:
    from textual.widgets import Button, Input, TextArea

    from gemma_chat.tui.screens.settings import SettingsScreen

    app, _ = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#settings-system", TextArea).load_text("Answer in French.")
        screen.query_one("#settings-temperature", Input).value = "9"
        screen.query_one("#settings-save", Button).press()
        error = screen.query_one("#settings-error")
        await wait_until(pilot, lambda: "temperature" in str(error.render()))
        screen.query_one("#settings-temperature", Input).value = "0.2"
        screen.query_one("#settings-seed", Input).value = "7"
        screen.query_one("#settings-save", Button).press()
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert app.conversation.system == "Answer in French."
        assert app.engine.sampling.temperature == 0.2 and app.engine.sampling.seed == 7


async def test_quitting_mid_reply_stops_the_generation(vocab) -> None:
    app, _ = make_app(vocab, [LONG], delay_s=0.02)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: app.generating)
        cancel = app.replies.cancel
        await pilot.press("ctrl+q")
    assert cancel is not None and cancel.is_set()  # the worker stops within a token
