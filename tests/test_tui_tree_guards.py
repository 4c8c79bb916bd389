"""The conversation tree against everything else going on in the app: a reply
streaming, an edit pending, a message queued, /compact, a long message answered part by
part, saved prompts, saving off or failed, remapped keys, focus. Each test was written
by a red-team review and failed before the fix (the docstrings say what went wrong)."""

from __future__ import annotations

import threading

from tui_support import answered, scripted_loader, send, settle, wait_until
from tui_support import shown_turns as shown

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.queued import QueuedMessage
from gemma_chat.tui.widgets.user_message import UserMessage


def two_versions(store: HistoryStore) -> tuple[int, list[MessageRecord]]:
    """A stored conversation: Q1, then two replies to it (A1, then A1b, viewed)."""
    cid = store.create(system=None, params={}, origin="app")
    q1 = store.add(cid, MessageRecord("user", "Q1", parent_id=None))
    a1 = store.add(cid, MessageRecord("model", "A1", reply_to=q1.id, parent_id=q1.id))
    a1b = store.add(cid, MessageRecord("model", "A1b", reply_to=q1.id, parent_id=q1.id))
    return cid, [q1, a1, a1b]


# --------------------------------------------------------------------------- 1


async def test_search_hit_on_another_branch_while_a_reply_streams_is_refused(vocab, store) -> None:
    """Ctrl+F works while a reply streams; choosing a hit on another branch of the
    conversation on screen calls show_branch with no busy check: the streaming reply's
    widget is removed, the conversation is swapped, and the reply (to Q2) is stored
    under the other branch's question."""
    cid, (_q1, a1, _a1b) = two_versions(store)
    loader = scripted_loader(
        vocab, ["a long reply " + " ".join(f"w{i}" for i in range(120))], delay_s=0.02
    )
    app = GemmaChatApp(Settings(), loader=loader, store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and shown(app) == ["Q1", "A1b"])
        await send(pilot, "Q2")
        await wait_until(pilot, lambda: app.generating)
        # What SearchScreen's callback does with the chosen hit ("A1", other branch).
        opened = await app.resume_conversation(cid, a1.id)
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        q2 = next(m for m in store.all_messages(cid) if m.text == "Q2")
        reply = next(m for m in store.all_messages(cid) if m.text.startswith("a long"))
        assert not opened, "switched branches while a reply was streaming"
        assert reply.parent_id == q2.id and reply.reply_to == q2.id


# --------------------------------------------------------------------------- 2


async def test_switching_versions_during_an_edit_keeps_the_draft(vocab, store) -> None:
    """Ctrl+O saves the draft the input held; Alt+Right (from the input, where Ctrl+O
    puts the focus) switches branches with the edit pending: the edit is silently
    dropped, Esc no longer gives the draft back, and Enter sends the old text as a new
    message instead of an edit."""
    cid, _ = two_versions(store)
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and shown(app) == ["Q1", "A1b"])
        app.prompt.set_text("my half-written draft")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "Q1" and app.replies.editing is not None
        await pilot.press("alt+right")  # from the input: the reply's versions
        await settle(pilot)
        edit_alive = app.replies.editing is not None
        switched = shown(app) == ["Q1", "A1"]
        await pilot.press("escape")
        await settle(pilot)
        # Either the switch is refused while editing, or the edit survives it.
        assert (not switched) or edit_alive, "edit dropped by the switch"
        assert app.prompt.text == "my half-written draft"


# --------------------------------------------------------------------------- 3


async def test_switching_versions_while_a_message_is_queued_keeps_it(vocab, store) -> None:
    """A message sent while the model loads waits in the chat log: a switch is refused
    meanwhile (it would re-mount the chat log and lose it), and it is sent once the
    model is loaded."""
    cid, _ = two_versions(store)
    release = threading.Event()

    def load(settings, notify):
        release.wait(30)
        return None, ScriptedBackend(vocab, ["the answer"])

    app = GemmaChatApp(Settings(), loader=load, store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        app.prompt.focus()
        app.prompt.set_text("please keep me")
        await pilot.press("enter")
        await settle(pilot)
        assert app.query(QueuedMessage)
        await pilot.press("alt+left")
        await settle(pilot)
        assert shown(app) == ["Q1", "A1b"] and app.query(QueuedMessage)
        release.set()
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        await settle(pilot)
        sent = any(t.text == "please keep me" for t in app.conversation.turns)
        assert sent or "please keep me" in app.prompt.text, "queued message lost"


# --------------------------------------------------------------------------- 4


async def test_a_compaction_does_not_follow_a_switch_to_another_branch(vocab, store) -> None:
    """/compact summarises the turns of the branch on screen and keeps the summary for
    the next message stored. After switching to another branch, that next message is
    on the other branch: it carries a summary of turns it does not have, and resuming
    that branch puts the other branch's summary in its prompt."""
    # Branch A: Q1 A1 Q2 A2 Q3 A3; branch B (viewed): Q1 A1b Q2b A2b Q3b A3b.
    cid = store.create(system=None, params={}, origin="app")
    q1 = store.add(cid, MessageRecord("user", "Q1", parent_id=None))
    for branch in ("", "b"):
        parent = q1.id
        for n in (1, 2, 3):
            q = (
                q1
                if n == 1
                else store.add(cid, MessageRecord("user", f"Q{n}{branch}", parent_id=parent))
            )
            a = store.add(
                cid, MessageRecord("model", f"A{n}{branch}", reply_to=q.id, parent_id=q.id)
            )
            parent = a.id
    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["SUMMARY OF B", "A4"]), store=store, resume=cid
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and len(shown(app)) == 6)
        assert shown(app)[1] == "A1b"
        await send(pilot, "/compact")
        await wait_until(pilot, lambda: app.conversation.summary is not None)
        await settle(pilot)
        await pilot.press("alt+left")  # the last message with versions: A1b -> A1
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"])
        await send(pilot, "Q4")
        await answered(pilot, 4)
    from gemma_chat.history.store import to_conversation

    branch = store.messages(cid)
    assert [m.text for m in branch][-2:] == ["Q4", "A4"] and branch[1].text == "A1"
    resumed = to_conversation(store.get(cid), branch, None)
    assert resumed.summary is None, f"branch A resumes with B's summary: {resumed.summary}"


# --------------------------------------------------------------------------- 5


async def test_clicking_a_message_does_not_take_typing_away_from_the_input(vocab, store) -> None:
    """Messages became focusable; a click on one (to select text, or by accident)
    leaves keys going to the message, not the input."""
    cid, _ = two_versions(store)
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        await pilot.click(UserMessage)
        await settle(pilot)
        await pilot.press("h", "i")
        await settle(pilot)
        assert app.prompt.text == "hi"


async def test_tab_from_the_input_with_many_messages(vocab, store) -> None:
    """Tab order now visits every message on screen."""
    cid, _ = two_versions(store)
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1b"])
        app.prompt.focus()
        await pilot.press("shift+tab")
        await settle(pilot)
        assert not isinstance(app.focused, UserMessage | ModelReply)


# --------------------------------------------------------------------------- 6


async def test_regenerating_an_earlier_reply_after_a_long_message_answers_that_reply(
    vocab, store
) -> None:
    """A message larger than the context sets the streamer's map-reduce plan, which is
    never cleared: Ctrl+R on an earlier reply (possible now) runs the long message's
    map-reduce again and stores its answer as a version of the earlier reply."""
    loader = scripted_loader(vocab, lambda n: f"note {n}", 0.0, n_ctx=512)
    app = GemmaChatApp(Settings(), loader=loader, store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        long = "\n\n".join(
            f"Crate {i} holds {i * 3 % 17} pears. Lot {1000 + i}." for i in range(150)
        )
        await send(pilot, long)
        await wait_until(
            pilot, lambda: len(app.conversation.turns) == 4 and not app.generating, timeout=60
        )
        await settle(pilot)
        cid = app.conversation_id
        backend = app.backend
        started = backend.replies_started
        app.prompt.focus()
        for _ in range(3):
            await pilot.press("alt+up")  # the first reply
        await settle(pilot)
        assert app.branches.selected() == 1
        await pilot.press("ctrl+r")
        await wait_until(
            pilot, lambda: len(app.conversation.turns) == 2 and not app.generating, timeout=60
        )
        await settle(pilot)
        again = store.messages(cid)[-1]
        assert backend.replies_started - started == 1, (
            f"{backend.replies_started - started} generations for one regenerated reply"
        )
        assert "map_reduce" not in (again.meta or {})


# --------------------------------------------------------------------------- 8


async def test_remapped_edit_and_retry_keys_are_what_f1_says_for_a_selected_message(
    vocab, store
) -> None:
    """F1's "On a selected message" group hardcodes Ctrl+O / Ctrl+R (and EDIT_HINT /
    NO_VERSIONS hardcode Alt+Left, Ctrl+O, Ctrl+R): after `[keys]` remaps them, F1 lists
    the old keys there."""
    settings = Settings(keys={"gemma.edit": "f4", "gemma.retry": "f5"})
    app = GemmaChatApp(settings, loader=scripted_loader(vocab, ["x"]), store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        groups = dict(app.keys.help_groups())
        selected = next(rows for title, rows in groups.items() if "selected message" in title)
        keys = [key for key, _, _ in selected]
        assert "Ctrl+O" not in keys and "Ctrl+R" not in keys, keys


# --------------------------------------------------------------------------- 9


async def test_alt_left_on_a_selected_message_without_history_does_not_crash(
    vocab, tmp_path, monkeypatch
) -> None:
    """With history saving off (or after a store failure), record_user/record_reply
    return None, so BranchSwitcher.refresh() is never called after the first _show():
    _versions stays []; Alt+Left on a selected message indexes it -> IndexError."""
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path / "data"))
    app = GemmaChatApp(Settings(save_history=False), loader=scripted_loader(vocab, ["A1"]))
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        app.prompt.focus()
        await pilot.press("alt+up")  # select the reply
        await settle(pilot)
        assert app.branches.selected() == 1
        await pilot.press("alt+left")
        await settle(pilot)
        assert app.is_running and shown(app) == ["Q1", "A1"]


# --------------------------------------------------------------------------- 10


async def test_a_summary_of_turns_regenerated_away_leaves_the_prompt(vocab, store) -> None:
    """/compact summarises the first turns; Ctrl+R on the first reply (possible now)
    replaces turns the summary stands for, but conversation.summary stays. It is ignored
    only while the branch is shorter than the summary: a few exchanges later the old
    branch's summary replaces the new branch's first turns in every prompt."""
    replies = ["A1", "A2", "A3", "SUMMARY OF THE OLD BRANCH", "A1 again", "B2", "B3", "B4"]
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, replies), store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for n in (1, 2, 3):
            await send(pilot, f"Q{n}")
            await answered(pilot, n)
        await send(pilot, "/compact")
        await wait_until(pilot, lambda: app.conversation.summary is not None)
        await settle(pilot)
        covered = app.conversation.summary.turns
        app.prompt.focus()
        for _ in range(5):
            await pilot.press("alt+up")  # the first reply
        await settle(pilot)
        assert app.branches.selected() == 1
        await pilot.press("ctrl+r")
        await answered(pilot, 1)
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        n = 2
        while len(app.conversation.turns) <= covered:
            await send(pilot, f"R{n}")
            await answered(pilot, n)
            n += 1
        await send(pilot, "last question")
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        turns, system = app.conversation.prompt_view()
        assert app.conversation.turns[1].text == "A1 again"
        assert "SUMMARY OF THE OLD BRANCH" not in (system or "") + "".join(t.text for t in turns), (
            f"the prompt starts at {turns[0].text!r} with the old branch's summary"
        )


# --------------------------------------------------------------------------- 11


async def test_after_an_edit_whose_reply_failed_switching_a_later_message_works(
    vocab, store
) -> None:
    """Edit the first question; its reply fails: the old branch comes back on screen,
    but BranchSwitcher._versions was last computed for the one-turn edited branch (and
    is not refreshed by a failure): selecting a later message and pressing Alt+Left
    indexes past it -> IndexError, the app dies."""

    def script(n: int) -> str:
        if n == 3:
            raise RuntimeError("the server went away")
        return f"A{n + 1}"

    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, script), store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for n in (1, 2, 3):
            await send(pilot, f"Q{n}")
            await answered(pilot, n)
        app.prompt.focus()
        for _ in range(6):
            await pilot.press("alt+up")  # the first question
        await settle(pilot)
        assert app.branches.selected() == 0
        await pilot.press("ctrl+o")
        await settle(pilot)
        app.prompt.clear()
        await send(pilot, "Q1 edited")
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"])
        app.prompt.focus()
        await pilot.press("alt+up")  # A3
        await settle(pilot)
        assert app.branches.selected() == 5
        await pilot.press("alt+left")
        await settle(pilot)
        assert app.is_running


# --------------------------------------------------------------------------- 12


async def test_switching_after_a_store_failure_does_not_drop_unsaved_messages(
    vocab, store, monkeypatch
) -> None:
    """One store failure (e.g. "database is locked" by another process for longer than
    the busy timeout) stops saving this conversation; the chat goes on, on screen only.
    A version switch then rebuilds the screen from the store: the exchanges since the
    failure vanish from the screen, and are in the store neither."""
    from gemma_chat.history.store import StoreError

    cid, _ = two_versions(store)
    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["unsaved answer"]), store=store, resume=cid
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and shown(app) == ["Q1", "A1b"])
        real_add = store.add
        calls = {"n": 0}

        def add_once_locked(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreError("history database: database is locked")
            return real_add(*args, **kwargs)

        monkeypatch.setattr(store, "add", add_once_locked)
        await send(pilot, "an important question")
        await answered(pilot, 2)
        assert shown(app) == ["Q1", "A1b", "an important question", "unsaved answer"]
        await pilot.press("alt+left")  # look at the other reply to Q1...
        await settle(pilot)
        await pilot.press("alt+right")  # ...and come back
        await settle(pilot)
        texts = shown(app) + [m.text for m in store.all_messages(cid)]
        assert "an important question" in texts, f"gone: screen {shown(app)}"


# --------------------------------------------------------------------------- 14


async def test_editing_after_a_switch_with_a_saved_prompt_fills_its_template_once(
    vocab, store
) -> None:
    """With `/prompt NAME`, Ctrl+O gives back what was typed (`Turn.typed`), and sending
    fills the template again. A switch rebuilds every turn from the store, where `typed`
    is not kept: Ctrl+O then gives back the *filled* text, and sending it wraps it in
    the template a second time."""
    from gemma_chat.config.settings import SavedPrompt

    wrap = SavedPrompt(template="Translate to French: {input}")
    app = GemmaChatApp(
        Settings(prompts={"fr": wrap}),
        loader=scripted_loader(vocab, ["Bonjour", "Salut", "x"]),
        store=store,
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/prompt fr")
        await settle(pilot)
        await send(pilot, "Hello")
        await answered(pilot, 1)
        await pilot.press("ctrl+r")  # a second version of the reply
        await answered(pilot, 1)
        await wait_until(pilot, lambda: shown(app)[-1] == "Salut")
        await pilot.press("alt+left")  # back to the first version
        await wait_until(pilot, lambda: shown(app)[-1] == "Bonjour")
        app.prompt.focus()
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "Hello", f"Ctrl+O gave back {app.prompt.text!r}"
