"""The conversation tree in the app, from a second red-team review: typing, pasting
and editing keys on a selected message, remapped version keys, leaving a conversation
with a message queued or an edit open, regenerating or editing an earlier message when
nothing is saved, an edit whose question is above the messages shown, and the focus
after a regenerate. Each test failed before its fix."""

from __future__ import annotations

import pytest
from test_tui_tree_guards import shown, two_versions
from textual import events
from tui_support import answered, scripted_loader, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage


async def test_paste_on_a_clicked_message_goes_to_the_input(vocab, store) -> None:
    """Typing after a click goes on in the input, but a paste (Ctrl+Shift+V, middle
    click, bracketed paste) goes to the focused message and is dropped."""
    cid, _ = two_versions(store)
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        await pilot.click(UserMessage)
        await settle(pilot)
        assert isinstance(app.focused, UserMessage)
        app.focused.post_message(events.Paste("pasted text"))
        await settle(pilot)
        assert app.prompt.text == "pasted text"


async def test_remapped_version_keys_on_a_selected_message(vocab, store) -> None:
    """_KEPT_KEYS is hard-coded "[]": with gemma.version_on remapped to "." (F1 says
    "." switches), "." on a selected reply is typed into the input instead."""
    cid, _ = two_versions(store)
    settings = Settings(keys={"gemma.version_back": "comma", "gemma.version_on": "full_stop"})
    app = GemmaChatApp(settings, loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        await pilot.click(ModelReply)
        await settle(pilot)
        await pilot.press("comma")
        await settle(pilot)
        assert (shown(app), app.prompt.text) == (["Q1", "A1"], "")


async def test_unmapped_bracket_is_typed(vocab, store) -> None:
    """With the version keys remapped away from [ and ], a "[" typed on a selected
    message is neither a switch nor typed: it is lost."""
    cid, _ = two_versions(store)
    settings = Settings(keys={"gemma.version_back": "comma", "gemma.version_on": "full_stop"})
    app = GemmaChatApp(settings, loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        await pilot.click(UserMessage)
        await settle(pilot)
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert app.prompt.text == "["


async def test_backspace_after_typing_through_a_selected_message(vocab, store) -> None:
    """Select, type "ab" (forwarded; the input now has focus), click the message
    again, Backspace: the key stays with the message, the input keeps "ab"."""
    cid, _ = two_versions(store)
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        await pilot.click(UserMessage)
        await pilot.press("a", "b")
        await pilot.click(UserMessage)
        await settle(pilot)
        await pilot.press("backspace")
        await settle(pilot)
        assert app.prompt.text == "a"


def _queued_app(vocab, store, cid):
    import threading

    from gemma_chat.backend.scripted import ScriptedBackend

    release = threading.Event()

    def load(settings, notify):
        release.wait(30)
        return None, ScriptedBackend(vocab, ["the answer"])

    return GemmaChatApp(Settings(), loader=load, store=store, resume=cid), release


@pytest.mark.parametrize("how", ["open another", "new"])
async def test_leaving_the_conversation_while_a_message_is_queued(vocab, store, how) -> None:
    """The #9 fix refuses a version switch while a message waits for the model, but
    opening another conversation (sidebar, search) or Ctrl+N is not refused: the
    message typed in conversation A is then sent into, and stored in, B (or a new one)."""
    from gemma_chat.history.store import MessageRecord
    from gemma_chat.tui.widgets.queued import QueuedMessage

    cid, _ = two_versions(store)
    other = store.create(system=None, params={}, origin="app")
    x = store.add(other, MessageRecord("user", "X1", parent_id=None))
    store.add(other, MessageRecord("model", "Y1", reply_to=x.id, parent_id=x.id))
    app, release = _queued_app(vocab, store, cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        app.prompt.focus()
        app.prompt.set_text("a question about Q1")
        await pilot.press("enter")
        await settle(pilot)
        assert app.query(QueuedMessage)
        if how == "new":
            await app.action_new()
        else:
            await app.resume_conversation(other)
        await settle(pilot)
        release.set()
        await wait_until(pilot, lambda: app.engine is not None)
        for _ in range(3):
            await settle(pilot)
        stored_in_a = any(m.text == "a question about Q1" for m in store.all_messages(cid))
        kept = "a question about Q1" in app.prompt.text or bool(app.query(QueuedMessage))
        assert stored_in_a or kept, f"queued message lost: {shown(app)}, {app.prompt.text!r}"


async def test_opening_another_conversation_with_an_edit_open_keeps_the_draft(vocab, store) -> None:
    """#8 was fixed for version switches only. Ctrl+O with a half-written draft, then
    open another conversation (sidebar/search): the edit goes stale, Esc no longer gives
    the draft back, and the input holds conversation A's question, which Enter sends
    into B as a new message."""
    from gemma_chat.history.store import MessageRecord

    cid, _ = two_versions(store)
    other = store.create(system=None, params={}, origin="app")
    x = store.add(other, MessageRecord("user", "X1", parent_id=None))
    store.add(other, MessageRecord("model", "Y1", reply_to=x.id, parent_id=x.id))
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and shown(app) == ["Q1", "A1b"])
        app.prompt.focus()
        app.prompt.set_text("my half-written draft")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "Q1"
        opened = await app.resume_conversation(other)
        await settle(pilot)
        if not opened:
            return  # refused, like a version switch: fine
        await pilot.press("escape")
        await settle(pilot)
        assert app.prompt.text == "my half-written draft"


async def test_regenerating_an_earlier_reply_when_not_saving_loses_what_followed(
    vocab, store
) -> None:
    """A version switch is refused when nothing is saved ("another version cannot be
    shown without losing what is on screen"), but Ctrl+R on an earlier reply (and Ctrl+O
    on an earlier question) is not: Q2 and A2 leave the screen and the conversation, are
    stored nowhere, and no key brings them back — the issue's "nothing is deleted"."""
    from tui_support import notifications, send

    app = GemmaChatApp(
        Settings(save_history=False),
        loader=scripted_loader(vocab, ["A1", "A2", "A1 again"]),
        store=store,
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for q, n in (("Q1", 1), ("Q2", 2)):
            await send(pilot, q)
            await answered(pilot, n)
        assert [t.text for t in app.conversation.turns] == ["Q1", "A1", "Q2", "A2"]
        await pilot.click(ModelReply)  # the first reply, A1
        await settle(pilot)
        assert app.branches.selected() == 1
        await pilot.press("ctrl+r")
        await settle(pilot)
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        texts = [t.text for t in app.conversation.turns]
        warned = any("saved" in n or "lose" in n for n in notifications(app))
        assert "Q2" in texts or warned, (texts, notifications(app))


async def test_editing_a_question_above_the_window_from_its_reply(vocab, store) -> None:
    """A conversation opens on its last 40 turns. With an odd number of turns (here a
    question left unanswered at the end) the first one shown is a reply, A1, whose
    question Q1 is not mounted. Select A1, Ctrl+O edits Q1 (turn 0, hidden), send: the
    conversation is now [Q1', A1'] but hidden_turns stays 1, so the screen, the
    "Show 1 earlier messages" button, the labels and selected() are off by one."""
    from tui_support import send

    from gemma_chat.history.store import MessageRecord

    cid = store.create(system=None, params={}, origin="app")
    parent = None
    for i in range(1, 22):
        q = store.add(cid, MessageRecord("user", f"Q{i}", parent_id=parent))
        parent = q.id
        if i < 21:
            a = store.add(cid, MessageRecord("model", f"A{i}", reply_to=q.id, parent_id=q.id))
            parent = a.id
    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["new A1"]), store=store, resume=cid
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and len(shown(app)) == 40)
        assert shown(app)[0] == "A1" and app.switcher.hidden_turns == 1
        first = app.switcher.turn_widgets()[0]
        app.branches.select_widget(first)
        await settle(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "Q1"
        await send(pilot, "Q1 edited")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        await settle(pilot)
        texts = [t.text for t in app.conversation.turns]
        assert texts == ["Q1 edited", "new A1"]
        earlier = app.chat.query("#earlier")
        if earlier:  # "Show 1 earlier messages" is still there: pressing it
            await app.switcher.show_earlier_pressed()
            await settle(pilot)
        assert (app.switcher.hidden_turns, shown(app)) == (0, texts)


@pytest.mark.parametrize("how", ["click", "alt+up"])
async def test_typing_after_regenerating_a_selected_reply(vocab, store, how) -> None:
    """Click an earlier reply, Ctrl+R: the selected widget is hidden, then removed once
    the new reply exists. Where does typing go afterwards?"""
    from tui_support import send

    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["A1", "A2", "A1 again"]), store=store
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for q, n in (("Q1", 1), ("Q2", 2)):
            await send(pilot, q)
            await answered(pilot, n)
        if how == "click":
            await pilot.click(ModelReply)
        else:
            app.prompt.focus()
            await pilot.press("alt+up", "alt+up", "alt+up")  # A2, Q2, A1
        await settle(pilot)
        assert app.branches.selected() == 1
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not app.generating)
        for _ in range(3):
            await settle(pilot)
        assert [t.text for t in app.conversation.turns] == ["Q1", "A1 again"]
        await pilot.press("h", "i")
        await settle(pilot)
        assert app.prompt.text == "hi", f"focus: {app.focused!r}"
