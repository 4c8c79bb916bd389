"""``/schema`` and ``/prompt`` in the app (issue #15), under Pilot.

A scripted backend replays replies whatever the constraint (like a server that ignores
it), which shows the client-side check; the real demo model shows the grammar itself.
"""

from __future__ import annotations

import json

import pytest
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply

VALID = '{"name": "Ada", "age": 36}'


def make_app(vocab, replies=(VALID,), settings=None):
    loader = scripted_loader(vocab, replies)
    return GemmaChatApp(settings or Settings(), loader=loader)


async def ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None)


async def replies(pilot, count: int, timeout: float = 30.0) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
        timeout=timeout,
    )


def schema_status(app) -> str:
    widget = app.query_one("#status-schema")
    return str(widget.render()) if widget.display else ""


async def test_schema_constrains_validates_and_shows_in_the_status_bar(vocab) -> None:
    app = make_app(vocab, [VALID, "Ada is 36."])
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        assert schema_status(app) == ""
        await send(pilot, "/schema name, age int")
        assert schema_status(app) == "schema: concise"
        assert app.engine is not None and app.engine.constraint is not None
        assert app.engine.constraint.schema["required"] == ["name", "age"]
        await send(pilot, "Who?")
        await replies(pilot, 1)
        assert app.conversation.turns[-1].stop_reason is StopReason.END_OF_TURN
        # A reply that does not match is kept, marked, and said once.
        await send(pilot, "And again?")
        await replies(pilot, 2)
        await settle(pilot)
        turn = app.conversation.turns[-1]
        assert turn.text == "Ada is 36." and turn.stop_reason is StopReason.SCHEMA_MISMATCH
        assert turn.partial
        marker = list(app.query(ModelReply))[-1].query_one(".stop-marker")
        assert "does not match the schema" in str(marker.render())
        assert any("the reply is not valid JSON" in n for n in notifications(app))
        await send(pilot, "/schema off")
        assert schema_status(app) == "" and app.engine.constraint is None


async def test_schema_from_a_file_and_bad_input(vocab, tmp_path) -> None:
    (tmp_path / "person.json").write_text(json.dumps({"type": "object"}))
    app = make_app(vocab)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        await send(pilot, f"/schema @{tmp_path / 'person.json'}")
        assert schema_status(app) == "schema: person.json"
        await send(pilot, "/schema @missing.json")
        await send(pilot, "/schema age years")
        await send(pilot, "/schema")
        await settle(pilot)
        shown = notifications(app)
        assert any("no such file" in n for n in shown), shown
        assert any("unknown type 'years'" in n for n in shown)
        assert any("usage: /schema" in n for n in shown)
        assert schema_status(app) == "schema: person.json"  # a bad one changes nothing


async def test_prompt_command_applies_a_saved_prompt(vocab) -> None:
    prompts = {
        "extract": SavedPrompt.model_validate(
            {
                "system": "Extract the fields.",
                "template": "Text: {input}",
                "sampling": {"temperature": 0.1},
                "schema": "name, age int",
            }
        )
    }
    app = make_app(vocab, settings=Settings(prompts=prompts))
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "/prompt extract")
        assert app.conversation.system == "Extract the fields."
        assert app.sampling.temperature == 0.1 and app.engine.sampling.temperature == 0.1
        assert schema_status(app) == "schema: concise"
        await send(pilot, "Ada is 36")
        await replies(pilot, 1)
        assert app.conversation.turns[0].text == "Text: Ada is 36"
        assert app.conversation.turns[-1].stop_reason is StopReason.END_OF_TURN
        await send(pilot, "/prompt nosuch")
        await settle(pilot)
        assert any("no prompt named 'nosuch'" in n for n in notifications(app))
        await send(pilot, "/prompt off")
        assert app.saved_prompt is None and schema_status(app) == ""


async def test_palette_lists_saved_prompts_and_schema_off(vocab) -> None:
    from textual.content import Content

    loud = SavedPrompt(description="[b]loud[/b] \x1b]0;title\x07")
    app = make_app(vocab, settings=Settings(prompts={"loud": loud}))
    async with app.run_test() as pilot:
        await ready(pilot)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        # The palette reads help as markup: a description shows as typed, controls visible.
        shown = Content.from_markup(next(c.help for c in commands if c.title == "/prompt loud"))
        assert shown.plain.startswith("[b]loud[/b] ") and "\x1b" not in shown.plain
        for title in ("/schema @FILE.json|SCHEMA|off", "/schema off", "/prompt NAME|off"):
            assert title in titles
        for name in ("summarize", "translate", "explain-code", "commit-message"):
            assert f"/prompt {name}" in titles


@pytest.mark.slow
async def test_schema_on_the_real_demo_model() -> None:
    app = GemmaChatApp(Settings(model="demo", ctx=1024))
    app.sampling = app.sampling.model_copy(update={"max_tokens": 64, "seed": 1, "temperature": 0})
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=90)
        await send(pilot, "/schema name, mood happy|sad")
        await send(pilot, "Describe Alice, a happy person, as JSON.")
        await replies(pilot, 1, timeout=300)  # a real model on a loaded 2-core machine
        turn = app.conversation.turns[-1]
        assert turn.stop_reason is StopReason.END_OF_TURN, turn.text
        data = json.loads(turn.text)
        assert set(data) == {"name", "mood"} and data["mood"] in ("happy", "sad")
