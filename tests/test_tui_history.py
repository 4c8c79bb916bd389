"""Conversation history in the TUI, driven by Pilot on real SQLite files: recording as the
chat happens, the sidebar (open, new, rename, delete), search, ``--resume``, an unreadable
history file, and one real-path test on the demo model."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from datetime import datetime, timedelta, timezone

import pytest
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import RepeatGuard, Sampling, Settings
from gemma_chat.history.recording import params_of
from gemma_chat.history.store import HistoryStore, MessageRecord, store_file
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.kv_resume import StateEvent
from gemma_chat.tui.screens.dialogs import ConfirmScreen, CorruptStoreScreen, RenameScreen
from gemma_chat.tui.screens.search import MATCH_STYLE, SearchScreen
from gemma_chat.tui.widgets.chat_log import ModelReply, Notice
from gemma_chat.tui.widgets.sidebar import relative_time
from gemma_chat.tui.widgets.user_message import UserMessage

LONG = " ".join(f"word{i}" for i in range(150))


def make_app(vocab, replies=("one",), delay_s=0.0, settings=None, **kwargs):
    loader = kwargs.pop("loader", None) or scripted_loader(vocab, replies, delay_s)
    return GemmaChatApp(settings or Settings(), loader=loader, **kwargs)


async def ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None)


async def replies(pilot, count: int = 1, timeout: float = 10.0) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
        timeout,
    )


def stored(store: HistoryStore, conversation_id: int) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in store.messages(conversation_id)]


def seed_conversation(store: HistoryStore, title_word: str, pairs: int = 1, **kwargs) -> int:
    """A stored conversation of ``pairs`` exchanges; the last reply is partial."""
    cid = store.create(**kwargs)
    for n in range(pairs):
        store.add(cid, MessageRecord("user", f"{title_word} question {n}"))
        last = n == pairs - 1
        store.add(
            cid,
            MessageRecord(
                "model",
                f"**{title_word}** answer {n}",
                stop_reason="cancelled" if last else "end_of_turn",
                partial=last,
            ),
        )
    return cid


def shown(app: GemmaChatApp) -> list[str]:
    return [w.text for w in app.chat.children if isinstance(w, UserMessage | ModelReply)]


# ---------------------------------------------------------------------- recording


async def test_messages_are_saved_as_sent_and_when_finished(vocab, store) -> None:
    app = make_app(vocab, [LONG], delay_s=0.005, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hello there")
        await wait_until(pilot, lambda: app.generating)
        cid = app.conversation_id
        assert cid is not None
        assert stored(store, cid) == [("user", "hello there")]  # saved before the reply
        await replies(pilot)
        [_, reply] = store.messages(cid)
        assert reply.text == LONG and reply.stop_reason == "end_of_turn" and not reply.partial
        assert reply.model == "scripted.gguf" and reply.model_sha256 is None
        assert reply.completion_tokens and reply.sampling["seed"] is not None
        assert reply.token_ids == app.conversation.turns[-1].token_ids
        record = store.get(cid)
        assert record.title == "hello there" and record.origin == "app"
        assert record.params == params_of(app.sampling, app.repeat_guard)


async def test_a_stopped_reply_is_saved_as_partial(vocab, store) -> None:
    app = make_app(vocab, [LONG], delay_s=0.01, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: len(app.query_one(ModelReply).text) > 20)
        await pilot.press("escape")
        await replies(pilot)
        reply = store.messages(app.conversation_id)[-1]
        assert reply.partial and reply.stop_reason == "cancelled"
        assert reply.text == app.conversation.turns[-1].text and LONG.startswith(reply.text)


async def test_retry_edit_and_a_failed_reply_truncate_the_store(vocab, store) -> None:
    refuse = Settings(long_input="refuse")  # a message too long fails, not answered in parts
    app = make_app(vocab, ["one", "two", "three", "four", "five"], settings=refuse, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "question")
        await replies(pilot)
        cid = app.conversation_id
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "two")
        assert stored(store, cid) == [("user", "question"), ("model", "two")]
        await send(pilot, "next")
        await replies(pilot, 2)
        await pilot.press("ctrl+r")  # a retry after a retry: only the last reply goes
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "four")
        assert stored(store, cid) == [
            ("user", "question"),
            ("model", "two"),
            ("user", "next"),
            ("model", "four"),
        ]
        before = stored(store, cid)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "next"
        assert stored(store, cid) == before  # nothing goes before the edit is sent
        await pilot.press("escape")
        await settle(pilot)
        assert stored(store, cid) == before and app.prompt.text == ""
        await pilot.press("ctrl+o")
        await settle(pilot)
        await send(pilot, "next, edited")
        await replies(pilot, 2)
        assert stored(store, cid) == [
            ("user", "question"),
            ("model", "two"),
            ("user", "next, edited"),
            ("model", "five"),
        ]
        # The exchange it replaced is kept, on a branch of its own.
        kept = {m.text: m for m in store.all_messages(cid)}
        assert kept["next"].parent_id == kept["next, edited"].parent_id
        assert kept["four"].parent_id == kept["next"].id
        app.prompt.clear()
        shown = stored(store, cid)
        await send(pilot, LONG * 40)  # cannot fit: the reply fails, the text goes back
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        assert stored(store, cid) == shown


async def test_retry_and_edit_never_delete_what_another_process_wrote(vocab, store) -> None:
    app = make_app(vocab, ["one", "two", "three"], store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "question")
        await replies(pilot)
        cid = app.conversation_id
        with HistoryStore(store.path) as other:  # e.g. `ask --conversation` meanwhile
            asked = other.add(cid, MessageRecord("user", "from ask"))
            other.add(cid, MessageRecord("model", "ask reply", reply_to=asked.id))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "two")
        # The regenerated reply is a sibling of "one"; what the other process added
        # after "one" stays on that branch.
        assert stored(store, cid) == [("user", "question"), ("model", "two")]
        ask_reply = next(m for m in store.all_messages(cid) if m.text == "ask reply")
        assert [m.text for m in store.messages(cid, leaf=ask_reply.id)] == [
            "question",
            "one",
            "from ask",
            "ask reply",
        ]
        await pilot.press("ctrl+o")
        await settle(pilot)
        await send(pilot, "question, edited")
        await wait_until(pilot, lambda: app.conversation.turns[-1].text == "three")
        assert stored(store, cid) == [("user", "question, edited"), ("model", "three")]
        assert len(store.all_messages(cid)) == 7  # nothing anyone wrote is gone


async def test_a_failed_retry_keeps_the_old_reply(vocab, store) -> None:
    app = make_app(vocab, ["first answer"], store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "question")
        await replies(pilot)
        cid = app.conversation_id
        app.engine.sampling = app.engine.sampling.model_copy(update={"max_tokens": 10**6})
        app.backend.info = type(app.backend.info)(**{**vars(app.backend.info), "n_ctx": 8})
        await pilot.press("ctrl+r")  # the prompt no longer fits: the retry fails
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        assert stored(store, cid) == [("user", "question"), ("model", "first answer")]


async def test_changed_settings_are_stored(vocab, store) -> None:
    from textual.widgets import Button, Input

    from gemma_chat.tui.screens.settings import SettingsScreen

    app = make_app(vocab, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await replies(pilot)
        cid = app.conversation_id
        await send(pilot, "/system Be brief.")
        await send(pilot, "/temp 0.3")
        record = store.get(cid)
        assert record.system == "Be brief." and record.params["sampling"]["temperature"] == 0.3
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#settings-top_k", Input).value = "7"
        app.screen.query_one("#settings-save", Button).press()
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        # Stored by the dialog's result callback, which runs after the dialog closed.
        await wait_until(pilot, lambda: store.get(cid).params["sampling"]["top_k"] == 7)


async def test_saving_off_stores_nothing(vocab, store) -> None:
    app = make_app(vocab, settings=Settings(save_history=False))
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await replies(pilot)
        await pilot.press("ctrl+b")
        assert "saving is off" in str(app.switcher.sidebar.listing.get_option_at_index(1).prompt)
    assert not store_file().exists()  # not even created
    given = make_app(vocab, settings=Settings(save_history=False), store=store)
    async with given.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await replies(pilot)
        await send(pilot, "/system x")
    assert store.conversations() == []


async def test_a_store_error_is_shown_once_and_the_chat_goes_on(vocab, store) -> None:
    app = make_app(vocab, ["one", "two"], store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        store.close()  # every write fails from now on
        await send(pilot, "first")
        await replies(pilot)
        await send(pilot, "second")
        await replies(pilot, 2)
        failures = [n for n in notifications(app) if "Could not save" in n]
        assert len(failures) == 1, notifications(app)
        assert shown(app) == ["first", "one", "second", "two"]


async def test_ctrl_n_starts_a_new_stored_conversation(vocab, store) -> None:
    app = make_app(vocab, ["one", "two"], store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "first chat")
        await replies(pilot)
        first = app.conversation_id
        await pilot.press("ctrl+n")
        assert app.conversation_id is None and shown(app) == []
        await send(pilot, "second chat")
        await replies(pilot)
        assert app.conversation_id not in (None, first)
    assert [c.title for c in store.conversations()] == ["second chat", "first chat"]


async def test_an_emptied_conversation_is_not_left_behind(vocab, store) -> None:
    app = make_app(vocab, settings=Settings(long_input="refuse"), store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, LONG * 40)  # stored, then the reply fails: nothing is left
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        assert app.conversation_id is not None
        await pilot.press("ctrl+n")
        assert store.conversations() == []


async def test_history_keys_can_be_remapped_and_are_listed(vocab, store) -> None:
    from gemma_chat.tui.screens.help import HelpScreen

    settings = Settings(keys={"gemma.history": "f3", "gemma.history_delete": "x"})
    seed_conversation(store, "Mapped")
    app = make_app(vocab, settings=settings, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert not any("unknown bindings" in n for n in notifications(app))
        await pilot.press("f3")
        assert app.switcher.sidebar.has_class("-open")
        await pilot.press("down", "x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        ids = [binding_id for _, rows in app.screen._groups for _, _, binding_id in rows]
        for wanted in ("gemma.history", "gemma.search", "gemma.history_rename"):
            assert wanted in ids


# ------------------------------------------------------------------ the sidebar


async def test_sidebar_resumes_a_conversation_with_its_settings(vocab, store) -> None:
    params = params_of(Sampling(temperature=0.2, top_k=9), RepeatGuard(enabled=False))
    old = seed_conversation(store, "Saturn", pairs=2, system="Talk like a pirate.", params=params)
    seed_conversation(store, "Jupiter")
    app = make_app(vocab, ["fresh reply"], store=store)
    async with app.run_test(size=(120, 30)) as pilot:  # wide: entries not cut
        await ready(pilot)
        await pilot.press("ctrl+b")
        sidebar = app.switcher.sidebar
        assert sidebar.has_class("-open") and sidebar.listing.has_focus
        prompts = [str(o.prompt) for o in sidebar.listing.options]
        assert "New conversation" in prompts[0]
        assert "Jupiter question 0" in prompts[1] and "Saturn question 0" in prompts[2]
        assert "just now · 4 messages" in prompts[2]
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert app.conversation_id == old
        assert shown(app) == [
            "Saturn question 0",
            "**Saturn** answer 0",
            "Saturn question 1",
            "**Saturn** answer 1",
        ]
        replies_on_screen = list(app.query(ModelReply))
        assert not replies_on_screen[0].has_class("-stopped")
        assert replies_on_screen[1].has_class("-stopped")  # partial, marked as live
        assert "stopped by you" in str(replies_on_screen[1].query_one(".stop-marker").render())
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "answer 0" in screen and "**" not in screen  # rendered as Markdown
        assert app.conversation.system == "Talk like a pirate."
        assert app.engine.sampling.temperature == 0.2 and app.engine.sampling.top_k == 9
        assert app.engine.repeat_guard.enabled is False
        assert "● Saturn" in str(sidebar.listing.get_option(str(old)).prompt)
        await pilot.press("escape")  # closes the sidebar, back to the input
        assert not sidebar.has_class("-open") and app.prompt.has_focus
        await send(pilot, "and then?")
        await replies(pilot, 3)
        assert stored(store, old)[-2:] == [("user", "and then?"), ("model", "fresh reply")]
        assert store.conversations()[0].id == old  # now the most recent


async def test_sidebar_new_rename_and_delete(vocab, store) -> None:
    from textual.widgets import Input

    keep = seed_conversation(store, "Keep")
    doomed = seed_conversation(store, "Doomed")
    app = make_app(vocab, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+b", "down", "enter")  # opens Doomed, the newest
        await settle(pilot)
        assert app.conversation_id == doomed
        # Rename (a modal; blank is refused, Enter saves).
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RenameScreen))
        app.screen.query_one(Input).value = "   "
        await pilot.press("enter")
        assert isinstance(app.screen, RenameScreen)
        assert "blank" in str(app.screen.query_one("#rename-error").render())
        app.screen.query_one(Input).value = "Plans for the moon"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, RenameScreen))
        assert store.get(doomed).title == "Plans for the moon"
        assert "Plans for the moon" in str(
            app.switcher.sidebar.listing.get_option(str(doomed)).prompt
        )
        # Delete, cancelled: nothing changes.
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")
        await settle(pilot)
        assert len(store.conversations()) == 2 and app.conversation_id == doomed
        # Delete the open one, confirmed: it is gone and a new conversation starts.
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.conversation_id is None)
        assert [c.id for c in store.conversations()] == [keep]
        assert shown(app) == []
        assert [o.id for o in app.switcher.sidebar.listing.options] == ["new", str(keep)]
        # "n" in the sidebar starts a new conversation too.
        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.conversation_id == keep
        app.switcher.sidebar.listing.focus()
        await pilot.press("n")
        await settle(pilot)
        assert app.conversation_id is None and shown(app) == [] and app.prompt.has_focus
        await send(pilot, "/rename Nothing yet")
        assert any("Nothing to rename yet" in n for n in notifications(app))


async def test_sidebar_works_with_the_mouse(vocab, store) -> None:
    cid = seed_conversation(store, "Clicked")
    app = make_app(vocab, store=store)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "/history")
        await settle(pilot)
        option_list = app.switcher.sidebar.listing
        # The first conversation sits under "+ New conversation" (one line).
        await pilot.click(option_list, offset=(4, 1))
        await wait_until(pilot, lambda: app.conversation_id == cid)
        assert shown(app)[0] == "Clicked question 0"


async def test_a_long_conversation_opens_on_its_end(vocab, store, monkeypatch) -> None:
    from textual.widgets import Button

    from gemma_chat.tui.widgets.chat_log import ChatLog

    # Opening mounts the turns, then anchors the view on the end. Scrolling up between
    # the two was undone by the anchor, and the click then missed the button (Pilot's
    # OutOfBounds, about one run in ten): wait for the anchor that ends the opening.
    anchored: list[int] = []  # the user messages on screen at each anchor()
    real_anchor = ChatLog.anchor

    def anchor(self: ChatLog, anchor: bool = True) -> None:
        real_anchor(self, anchor)
        anchored.append(len(self.query(UserMessage)))

    monkeypatch.setattr(ChatLog, "anchor", anchor)
    cid = seed_conversation(store, "Long", pairs=25)  # 50 turns
    app = make_app(vocab, store=store, resume=cid)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: len(shown(app)) == 40 and 20 in anchored)
        assert shown(app)[0] == "Long question 5"
        button = app.chat.query_one("#earlier", Button)
        assert "10 earlier messages" in str(button.label)
        assert app.chat.scroll_y == app.chat.max_scroll_y > 0  # at the end
        app.chat.scroll_home(animate=False)  # the user scrolls up to it
        # The scroll happens after a refresh: wait for it (a fixed pause can be too short
        # on a loaded machine, and the click would miss the button above the view).
        await wait_until(
            pilot,
            lambda: (
                app.chat.scroll_y == 0
                and app.screen.region.contains_region(button.region)
                and button.region.area > 0
            ),
        )
        await pilot.click("#earlier")
        await wait_until(pilot, lambda: len(shown(app)) == 50)
        assert shown(app)[0] == "Long question 0" and not app.chat.query("#earlier")
        assert len(app.conversation.turns) == 50


async def test_resuming_while_a_reply_streams_is_refused(vocab, store) -> None:
    other = seed_conversation(store, "Other")
    app = make_app(vocab, [LONG], delay_s=0.01, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: app.generating)
        assert not await app.resume_conversation(other)
        await wait_until(pilot, lambda: any("being generated" in n for n in notifications(app)))
        assert app.conversation.turns[0].text == "go"
        app.action_history()
        await wait_until(pilot, lambda: app.switcher.sidebar.listing.has_focus)
        await pilot.press("escape")  # in the sidebar too, Esc stops the reply first
        await replies(pilot)
        assert app.conversation.turns[-1].stop_reason is StopReason.CANCELLED
        assert app.switcher.sidebar.has_class("-open")


async def test_quitting_mid_reply_keeps_what_was_shown(vocab, store) -> None:
    app = make_app(vocab, [LONG], delay_s=0.02, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, lambda: len(app.query_one(ModelReply).text) > 20)
        cid = app.conversation_id
        await pilot.press("ctrl+q")
    [user, reply] = store.messages(cid)
    assert user.text == "go" and reply.partial and reply.stop_reason == "cancelled"
    assert len(reply.text) > 20 and LONG.startswith(reply.text)


async def test_slash_rename_renames_the_open_conversation(vocab, store) -> None:
    app = make_app(vocab, store=store)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await replies(pilot)
        await send(pilot, "/rename  My   chat ")
        assert store.get(app.conversation_id).title == "My chat"


# ---------------------------------------------------------------------- search


async def test_search_jumps_to_the_message(vocab, store) -> None:
    cid = store.create()
    for n in range(30):
        word = "zanzibar" if n == 3 else "filler"
        store.add(cid, MessageRecord("user", f"question {n} about {word}"))
        reply = f"answer {n}\n\nmore\n\nlines"
        store.add(cid, MessageRecord("model", reply, stop_reason="end_of_turn"))
    seed_conversation(store, "Newer")
    app = make_app(vocab, store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"zanz")  # as you type: a prefix already matches
        await settle(pilot)
        results = app.screen.query_one("#search-results")
        assert results.option_count == 1
        prompt = results.get_option_at_index(0).prompt
        assert str(prompt).startswith("question 0 about filler · you\n")  # title · role
        highlighted = [str(prompt)[s.start : s.end] for s in prompt.spans if s.style == MATCH_STYLE]
        assert highlighted == ["zanzibar"]
        await pilot.press(*"x")
        await settle(pilot)
        assert results.option_count == 0
        assert "Nothing found" in str(app.screen.query_one("#search-status").render())
        await pilot.press("backspace", "enter")
        await wait_until(pilot, lambda: app.conversation_id == cid)
        await settle(pilot)
        found = [w for w in app.chat.children if w.has_class("-found")]
        assert [w.text for w in found] == ["question 3 about zanzibar"]
        chat = app.chat
        assert chat.scroll_y > 0 and chat.scroll_y < chat.max_scroll_y  # scrolled to it
        assert found[0].region.overlaps(chat.region)  # on screen
        await pilot.press("escape")  # Esc on the main screen must not close anything odd
        await send(pilot, "/search filler")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await settle(pilot)
        assert app.screen.query_one("#search-results").option_count > 1
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, SearchScreen)


# ---------------------------------------------------------------- resume at start


async def test_resume_at_start_before_the_model_has_loaded(vocab, store) -> None:
    cid = seed_conversation(store, "Earlier", system="Be kind.")
    release = threading.Event()

    def slow_loader(settings, notify):
        release.wait(10)
        return None, ScriptedBackend(vocab, ["later reply"])

    app = make_app(vocab, store=store, resume=cid, loader=slow_loader)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: len(shown(app)) == 2)
        assert app.engine is None and app.conversation_id == cid
        assert app.conversation.system == "Be kind."
        release.set()
        await ready(pilot)
        await send(pilot, "more please")
        await replies(pilot, 2)
        assert stored(store, cid)[-1] == ("model", "later reply")


async def test_a_conversation_without_its_last_reply_can_be_retried(vocab, store) -> None:
    cid = seed_conversation(store, "Cut")
    store.add(cid, MessageRecord("user", "this one lost its reply"))
    app = make_app(vocab, ["the reply"], store=store, resume=cid)
    async with app.run_test() as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        await send(pilot, "something else")
        assert app.prompt.text == "something else"  # kept, with a hint
        assert any("no reply yet" in n for n in notifications(app))
        await pilot.press("ctrl+r")
        await replies(pilot, 2)
        assert stored(store, cid)[-2:] == [
            ("user", "this one lost its reply"),
            ("model", "the reply"),
        ]


async def test_resuming_an_unknown_id_says_so(vocab, store) -> None:
    app = make_app(vocab, store=store, resume=999)
    async with app.run_test() as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: any("999" in n for n in notifications(app)))
        assert app.conversation_id is None and app.is_running


# ------------------------------------------------------------ an unreadable store


def corrupt_file() -> bytes:
    path = store_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    content = b"this is not a database, but it is the user's file\n" * 100
    path.write_bytes(content)
    return content


async def test_unreadable_store_continue_without_saving(vocab) -> None:
    content = corrupt_file()
    app = make_app(vocab)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, CorruptStoreScreen))
        assert str(store_file()) in str(app.screen.query_one("#corrupt-path").render())
        await pilot.click("#continue")
        await wait_until(pilot, lambda: not isinstance(app.screen, CorruptStoreScreen))
        await ready(pilot)
        await send(pilot, "still chatting")
        await replies(pilot)
        assert any("not saved this session" in n for n in notifications(app))
    assert store_file().read_bytes() == content
    assert sorted(p.name for p in store_file().parent.iterdir()) == ["history.db"]


async def test_unreadable_store_moved_aside(vocab) -> None:
    content = corrupt_file()
    app = make_app(vocab)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, CorruptStoreScreen))
        await pilot.click("#move")
        await wait_until(pilot, lambda: app.history.store is not None)
        await ready(pilot)
        await send(pilot, "a fresh start")
        await replies(pilot)
        assert any("was moved to" in n for n in notifications(app))
    [aside] = store_file().parent.glob("history.db.unreadable-*")
    assert aside.read_bytes() == content  # kept, byte for byte
    with HistoryStore() as fresh:
        [record] = fresh.conversations()
        assert record.title == "a fresh start"


async def test_a_store_that_cannot_open_is_reported_and_the_chat_goes_on(
    vocab, tmp_path, monkeypatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(blocker))
    app = make_app(vocab)
    async with app.run_test() as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: any("not saved" in n for n in notifications(app)))
        assert app.history.store is None
        await send(pilot, "hello anyway")
        await replies(pilot)
        assert shown(app) == ["hello anyway", "one"]
        await pilot.press("ctrl+f")  # search explains instead of failing
        await wait_until(pilot, lambda: any("cannot create" in n for n in notifications(app)))
    assert blocker.read_text() == "a file where the data folder should be"


# ------------------------------------------------------------------- the pieces


def test_relative_time() -> None:
    now = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)

    def ago(**delta: float) -> str:
        return relative_time((now - timedelta(**delta)).isoformat(), now)

    assert ago(seconds=5) == "just now"
    assert ago(minutes=5) == "5 min ago"
    assert ago(hours=3) == "3 h ago"
    assert ago(days=3) == "3 days ago"
    assert ago(days=40) == (now - timedelta(days=40)).astimezone().strftime("%d %b")
    assert relative_time("not a time", now) == ""


# --------------------------------------------------------------- the real path


@pytest.mark.slow
async def test_real_demo_model_is_stored_and_resumed(demo_path) -> None:
    sha256 = hashlib.sha256(demo_path.read_bytes()).hexdigest()
    settings = Settings(model="demo", ctx=1024)
    app = GemmaChatApp(settings)
    app.sampling = app.sampling.model_copy(update={"max_tokens": 12, "seed": 1})
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Hello!")
        await replies(pilot, timeout=60)
        cid = app.conversation_id
        reply = app.conversation.turns[-1]
    with HistoryStore() as store:
        messages = store.messages(cid)
        assert [m.role for m in messages] == ["user", "model"]
        assert messages[1].model == demo_path.name and messages[1].model_sha256 == sha256
        assert messages[1].text == reply.text and messages[1].token_ids == reply.token_ids
        assert messages[1].sampling["max_tokens"] == 12
    again = GemmaChatApp(settings, resume=cid)
    async with again.run_test() as pilot:
        await wait_until(pilot, lambda: len(shown(again)) == 2)
        await wait_until(pilot, lambda: again.engine is not None, timeout=60)
        await asyncio.sleep(0)
        assert shown(again) == ["Hello!", reply.text]
        assert again.sampling.max_tokens == 12  # the stored parameters
        # The same model file: its token ids come back, so the prompt is exactly the one
        # the model generated.
        assert again.conversation.turns[-1].token_ids == reply.token_ids is not None
        assert again.conversation.turns[-1].stop_reason is StopReason(messages[1].stop_reason)


# -------------------------------------------------------------------- snapshot


def test_sidebar_snapshot(snap_compare, vocab, tmp_path) -> None:
    """The sidebar open next to a conversation (80x24, the default theme)."""
    with HistoryStore(tmp_path / "snap.db") as store:
        for title in ("Plan a trip to Lisbon", "Explain Python decorators with examples", "Regex"):
            seed_conversation(store, title)
        app = make_app(vocab, ["Sure: `^\\d+$` matches digits only."], store=store)

        async def open_sidebar(pilot) -> None:
            app.prompt.cursor_blink = False
            await ready(pilot)
            await send(pilot, "Write a regex for digits")
            await replies(pilot)
            await pilot.pause(0.3)
            app.status.set_speed("TTFT 0.05s · 42.0 tok/s")  # timings vary
            await pilot.press("ctrl+b")
            await pilot.pause(0.2)

        assert snap_compare(app, terminal_size=(80, 24), run_before=open_sidebar)


@pytest.mark.slow
async def test_real_kv_state_is_saved_at_quit_and_restored_on_resume(demo_path) -> None:
    from gemma_chat.config.settings import KVCacheSettings

    settings = Settings(model="demo", ctx=1024, state_cache=KVCacheSettings(min_tokens=8))
    app = GemmaChatApp(settings)
    app.sampling = app.sampling.model_copy(update={"max_tokens": 12, "seed": 1})
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Name three rivers.")
        await replies(pilot, timeout=60)
        cid = app.conversation_id
        first = app.last_done
        app.exit()  # quitting leaves the conversation: its state is saved
    app.kv.close()
    assert [(e.kind, e.conversation_id, e.result) for e in app.kv.events] == [("save", cid, True)]

    again = GemmaChatApp(settings, resume=cid)
    async with again.run_test() as pilot:
        await wait_until(pilot, lambda: again.engine is not None, timeout=60)
        await wait_until(pilot, lambda: bool(again.kv.events), timeout=30)
        (restored,) = again.kv.events
        assert restored.kind == "restore" and restored.result > 0, restored.reason
        await send(pilot, "And three mountains?")
        await replies(pilot, count=2, timeout=60)
        stats = again.last_done.stats
        history = first.stats.prompt_tokens + first.stats.completion_tokens
        # Only the new turn is evaluated: the history came from the saved state.
        assert stats.evaluated_tokens < stats.prompt_tokens - history + 8
        # Deleting the conversation deletes its saved state too.
        key = again.history.store.get(cid).uuid
        await again.switcher.delete(cid)
        again.kv.wait()
        assert again.kv.events[-1] == StateEvent("forget", cid, True, None)
        assert not list(again.kv.cache.directory.glob(f"{key}.*"))
    again.kv.close()
