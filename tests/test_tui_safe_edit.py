"""Editing is safe: Ctrl+O removes nothing until the edited message is sent, Esc gives
the view and the draft back, and what an edit or a retry replaces stays recoverable:
kept in the store (on a branch of their own), and back on screen when the new reply fails."""

from __future__ import annotations

from tui_support import answered, scripted_loader, send, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply, Notice
from gemma_chat.tui.widgets.user_message import UserMessage

LONG = " ".join(f"word{i}" for i in range(150))


def make_app(vocab, store, replies) -> GemmaChatApp:
    # long_input = "refuse": a message too long fails (map would answer it in parts).
    settings = Settings(long_input="refuse")
    return GemmaChatApp(settings, loader=scripted_loader(vocab, replies), store=store)


def shown(app: GemmaChatApp) -> list[str]:
    """The messages visible on screen, in order."""
    return [w.text for w in app.chat.query("UserMessage, ModelReply") if w.display]


def stored(store: HistoryStore, cid: int) -> list[str]:
    """The branch viewed, as the store has it."""
    return [m.text for m in store.messages(cid)]


async def test_ctrl_o_removes_nothing_until_sent_and_esc_restores(vocab, store) -> None:
    app = make_app(vocab, store, ["A1", "A2", "A2 again"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        await send(pilot, "Q2")
        await answered(pilot, 2)
        cid = app.conversation_id
        assert cid is not None
        app.prompt.set_text("a draft I was typing")
        await pilot.press("ctrl+o")
        await settle(pilot)
        # The question is in the input; the exchange is still there, marked, and stored.
        assert app.prompt.text == "Q2"
        assert shown(app) == ["Q1", "A1", "Q2", "A2"]
        assert len(app.conversation.turns) == 4
        assert stored(store, cid) == ["Q1", "A1", "Q2", "A2"]
        marked = [w.text for w in app.chat.query(".-editing")]
        assert marked == ["Q2", "A2"]
        await pilot.press("escape")
        await settle(pilot)
        assert app.prompt.text == "a draft I was typing"  # the draft is back
        assert not app.chat.query(".-editing") and shown(app) == ["Q1", "A1", "Q2", "A2"]
        assert stored(store, cid) == ["Q1", "A1", "Q2", "A2"]

        await pilot.press("ctrl+o")
        await settle(pilot)
        await send(pilot, "Q2, better")
        await answered(pilot, 2)
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2, better", "A2 again"])
        assert [t.text for t in app.conversation.turns] == ["Q1", "A1", "Q2, better", "A2 again"]
        assert stored(store, cid) == ["Q1", "A1", "Q2, better", "A2 again"]
        # The exchange it replaced is kept, on its own branch (a sibling of the edit).
        everything = {m.text: m for m in store.all_messages(cid)}
        new_id = everything["Q2, better"].id
        assert [m.text for m in store.siblings(cid, new_id)] == ["Q2", "Q2, better"]
        old_branch = store.messages(cid, leaf=everything["A2"].id)
        assert [m.text for m in old_branch] == ["Q1", "A1", "Q2", "A2"]


async def test_an_edit_whose_reply_fails_gives_the_exchange_back(vocab, store) -> None:
    app = make_app(vocab, store, ["A1"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        cid = app.conversation_id
        await pilot.press("ctrl+o")
        await settle(pilot)
        await send(pilot, LONG * 40)  # cannot fit the context: the reply fails
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        await settle(pilot)
        assert shown(app) == ["Q1", "A1"]
        assert [t.text for t in app.conversation.turns] == ["Q1", "A1"]
        assert stored(store, cid) == ["Q1", "A1"]
        assert app.prompt.text == LONG * 40  # nothing typed is lost either


async def test_a_failed_retry_shows_the_old_reply_again(vocab, store) -> None:
    app = make_app(vocab, store, ["first answer"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "question")
        await answered(pilot, 1)
        cid = app.conversation_id
        app.engine.sampling = app.engine.sampling.model_copy(update={"max_tokens": 10**6})
        app.backend.info = type(app.backend.info)(**{**vars(app.backend.info), "n_ctx": 8})
        await pilot.press("ctrl+r")  # the prompt no longer fits: the retry fails
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        await settle(pilot)
        assert shown(app) == ["question", "first answer"]
        assert [t.text for t in app.conversation.turns] == ["question", "first answer"]
        assert app.prompt.text == ""  # the question has its reply: it stays where it was
        assert stored(store, cid) == ["question", "first answer"]


async def test_a_retry_keeps_the_old_reply_in_the_store(vocab, store) -> None:
    app = make_app(vocab, store, ["one", "two"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "question")
        await answered(pilot, 1)
        cid = app.conversation_id
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "two")
        await wait_until(pilot, lambda: shown(app) == ["question", "two"])
        assert len(app.chat.query(ModelReply)) == 1  # the old widget is gone for good
        everything = {m.text: m for m in store.all_messages(cid)}
        assert [m.text for m in store.siblings(cid, everything["two"].id)] == ["one", "two"]


async def test_an_edit_left_for_another_conversation_is_dropped(vocab, store) -> None:
    app = make_app(vocab, store, ["A1", "A2"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        await pilot.press("ctrl+o")
        await settle(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.replies.editing is None
        await send(pilot, "fresh start")  # an ordinary message, not an edit
        await answered(pilot, 1)
        assert [t.text for t in app.conversation.turns] == ["fresh start", "A2"]
        assert len(app.chat.query(UserMessage)) == 1
