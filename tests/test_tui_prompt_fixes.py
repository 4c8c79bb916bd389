"""``/prompt NAME`` in the app (issue #15 review): its sampling values are converted as the
command line converts them, and Ctrl+O and the input history give back what was typed,
not the filled template (sending it again would wrap it twice)."""

from __future__ import annotations

from tui_support import answered, notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.tui.app import GemmaChatApp

SUMMARIZE = "Summarize this:\n\n{input}"


def test_prompt_sampling_values_are_converted_like_the_config_s() -> None:
    prompt = SavedPrompt.model_validate({"sampling": {"temperature": "0.2", "max_tokens": 8.0}})
    assert prompt.sampling == {"temperature": 0.2, "max_tokens": 8}
    assert type(prompt.sampling["max_tokens"]) is int


async def test_a_prompt_with_lax_sampling_values_still_answers(vocab) -> None:
    lax = SavedPrompt.model_validate({"sampling": {"temperature": "0.2", "max_tokens": "8"}})
    loader = scripted_loader(vocab, ["Hi there."])
    app = GemmaChatApp(Settings(prompts={"lax": lax}), loader=loader)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/prompt lax")
        assert app.engine is not None
        assert app.engine.sampling.temperature == 0.2
        assert app.engine.sampling.max_tokens == 8
        await send(pilot, "Hello")
        await answered(pilot, 1)
        turn = app.conversation.turns[-1]
        assert turn.stop_reason is StopReason.END_OF_TURN, notifications(app)


async def test_edit_and_recall_give_back_what_was_typed(vocab) -> None:
    summarize = SavedPrompt(template=SUMMARIZE)
    loader = scripted_loader(vocab, ["One.", "Two.", "Three."])
    app = GemmaChatApp(Settings(prompts={"sum": summarize}), loader=loader)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/prompt sum")
        await send(pilot, "hello world")
        await answered(pilot, 1)
        assert app.conversation.turns[0].text == "Summarize this:\n\nhello world"
        assert app.prompt.prompt_history[-1] == "hello world"  # what Up recalls
        await app.action_edit()
        await settle(pilot)
        assert app.prompt.text == "hello world"
        await send(pilot, app.prompt.text + " again")
        await answered(pilot, 1)
        assert [t.text for t in app.conversation.turns if t.role is Role.USER] == [
            "Summarize this:\n\nhello world again"
        ]
        # Without the prompt, its template no longer applies: the message as it was sent.
        await send(pilot, "/prompt off")
        await app.action_edit()
        await settle(pilot)
        assert app.prompt.text == "Summarize this:\n\nhello world again"
