"""The conversation tree in the app: editing any message and regenerating any reply add
versions ("‹ 2/3 ›"), Alt+Left/Right and [ ] switch between them, the next message
continues the branch on screen, and resuming opens the branch last viewed."""

from __future__ import annotations

import pytest
from tui_support import answered, scripted_loader, send, settle, wait_until
from tui_support import shown_turns as shown

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.help import HelpScreen
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage


def make_app(vocab, store, replies, resume=None) -> GemmaChatApp:
    loader = scripted_loader(vocab, replies)
    return GemmaChatApp(Settings(), loader=loader, store=store, resume=resume)


def labels(app: GemmaChatApp) -> list[str]:
    """The version label of each message on screen ("" for none)."""
    found = []
    for widget in app.switcher.turn_widgets():
        if isinstance(widget, UserMessage):
            header = str(widget.render()).split("\n", 1)[0]
        else:
            header = str(widget.query_one(".speaker").render())
        found.append(header.split("‹", 1)[1].strip(" ›") if "‹" in header else "")
    return found


async def three_exchanges(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None)
    for n in (1, 2, 3):
        await send(pilot, f"Q{n}")
        await answered(pilot, n)


async def select(pilot, turn: int) -> None:
    """Select the message of ``turn`` with Alt+Up from the input, as a user would."""
    app = pilot.app
    app.prompt.focus()
    for _ in range(len(app.switcher.turn_widgets()) - turn):
        await pilot.press("alt+up")
    await settle(pilot)
    assert app.branches.selected() == turn


async def test_editing_the_first_message_keeps_the_old_branch_reachable(vocab, store) -> None:
    app = make_app(vocab, store, ["A1", "A2", "A3", "A1 edited"])
    async with app.run_test(size=(100, 40)) as pilot:
        await three_exchanges(pilot)
        cid = app.conversation_id
        await select(pilot, 0)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text == "Q1"
        app.prompt.clear()
        await send(pilot, "Q1 edited")
        await answered(pilot, 1)
        await wait_until(pilot, lambda: shown(app) == ["Q1 edited", "A1 edited"])
        assert labels(app) == ["2/2", ""]
        # Alt+Left from the input: the last message with versions goes back a version.
        await pilot.press("alt+left")
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"])
        assert labels(app) == ["1/2", "", "", "", "", ""]
        assert isinstance(app.focused, UserMessage) and app.branches.selected() == 0
        assert [m.text for m in store.messages(cid)][-1] == "A3"  # the branch viewed
        await pilot.press("right_square_bracket")  # [ ] on the selected message
        await wait_until(pilot, lambda: shown(app) == ["Q1 edited", "A1 edited"])
        assert len(store.all_messages(cid)) == 8


async def test_regenerating_the_middle_reply_then_switching_back_and_continuing(
    vocab, store, tmp_path
) -> None:
    app = make_app(vocab, store, ["A1", "A2", "A3", "A2 again", "A4"])
    async with app.run_test(size=(100, 40)) as pilot:
        await three_exchanges(pilot)
        cid = app.conversation_id
        await select(pilot, 3)  # the second reply
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2 again"])
        await answered(pilot, 2)
        assert labels(app) == ["", "", "", "2/2"]
        speaker = str(app.query(ModelReply).last().query_one(".speaker").render())
        await select(pilot, 3)
        await pilot.press("alt+left")
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"])
        assert labels(app)[3] == "1/2"
        # Replies shown again are headed by the model that wrote them, as when streamed.
        again = str(app.query(ModelReply).first().query_one(".speaker").render())
        assert again.split("‹")[0].strip() == speaker.split("‹")[0].strip() != "Gemma"
        # The next message continues the branch on screen.
        await send(pilot, "Q4")
        await answered(pilot, 4)
        assert shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3", "Q4", "A4"]
        branch = store.messages(cid)
        assert [m.text for m in branch] == shown(app)
        assert branch[6].parent_id == branch[5].id
    # Resuming opens the branch last viewed.
    again = make_app(vocab, store, [], resume=cid)
    async with again.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: len(shown(again)) == 8)
        assert shown(again)[-1] == "A4" and labels(again)[3] == "1/2"


async def test_a_message_without_versions_says_how_to_make_one_and_keys_are_listed(
    vocab, store
) -> None:
    app = make_app(vocab, store, ["A1"])
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "Q1")
        await answered(pilot, 1)
        await pilot.press("alt+right")
        await settle(pilot)
        assert any("no other version" in str(n.message) for n in app._notifications)
        assert shown(app) == ["Q1", "A1"]
        await pilot.press("alt+up", "alt+up")
        assert app.branches.selected() == 0
        await pilot.press("alt+down", "alt+down")
        assert app.focused is app.prompt  # below the last message: the input again
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        rows = [row for _, group in app.keys.help_groups() for row in group]
        described = {description for _, description, _ in rows}
        assert {"Previous version", "Next version", "Select a message above"} <= described
        assert any(key == "[" for key, _, _ in rows)
        assert isinstance(app.query(ModelReply).first(), ModelReply)


@pytest.mark.slow
async def test_branches_on_the_real_demo_model_reuse_the_shared_prefix(store) -> None:
    """The real model: edit the first of three exchanges and find the old branch again,
    regenerate the middle reply, switch back and continue; the continued reply evaluates
    only what the cached branch does not share with it."""
    from gemma_chat.backend.base import common_prefix
    from gemma_chat.chat.conversation import Conversation

    app = GemmaChatApp(Settings(model="demo", ctx=1024), store=store)
    app.sampling = app.sampling.model_copy(update={"max_tokens": 6, "seed": 1})
    async with app.run_test(size=(100, 40)) as pilot:
        await three_exchanges(pilot)
        first_branch = [t.text for t in app.conversation.turns]
        await select(pilot, 0)
        await pilot.press("ctrl+o")
        await settle(pilot)
        app.prompt.clear()
        await send(pilot, "Q1, edited")
        await answered(pilot, 1)
        assert labels(app)[0] == "2/2" and len(app.conversation.turns) == 2
        await pilot.press("alt+left")  # the old branch is still there, whole
        await wait_until(pilot, lambda: [t.text for t in app.conversation.turns] == first_branch)
        await select(pilot, 3)  # regenerate the middle reply
        await pilot.press("ctrl+r")
        await answered(pilot, 2)
        await wait_until(pilot, lambda: labels(app)[3] == "2/2")
        assert len(app.conversation.turns) == 4
        await select(pilot, 3)
        await pilot.press("left_square_bracket")  # back to the first reply, and Q3, A3
        await wait_until(pilot, lambda: [t.text for t in app.conversation.turns] == first_branch)
        cached = app.backend.cached_tokens  # the regenerated branch is in the KV cache
        await send(pilot, "Q4")
        await answered(pilot, 4)
        done = app.last_done
        assert done is not None
        asked = Conversation(system=app.conversation.system, turns=app.conversation.turns[:-1])
        prompt = app.engine.template.render_conversation(asked)
        shared = common_prefix(cached, prompt)
        # Q1 A1 Q2 up to the reply turn are shared: only the rest is evaluated.
        assert shared >= len(app.engine.template.render(asked.turns[:3])) > 0
        assert done.stats.prompt_tokens == len(prompt)
        assert done.stats.evaluated_tokens == len(prompt) - shared
        assert [m.text for m in store.messages(app.conversation_id)] == [
            t.text for t in app.conversation.turns
        ]


@pytest.mark.slow
async def test_a_saved_kv_state_serves_only_the_prefix_its_branch_shares(tmp_path) -> None:
    """A state saved on one branch, resumed on another (switched by another session):
    only the prefix both branches share is restored, and the rest is evaluated."""
    from gemma_chat.backend.base import common_prefix
    from gemma_chat.backend.kv_cache import resume_ids
    from gemma_chat.config.settings import KVCacheSettings
    from gemma_chat.history.store import to_conversation

    settings = Settings(model="demo", ctx=1024, state_cache=KVCacheSettings(min_tokens=4))
    app = GemmaChatApp(settings)
    app.sampling = app.sampling.model_copy(update={"max_tokens": 8, "seed": 1})
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "Name a river.")
        await answered(pilot, 1)
        await send(pilot, "And a lake?")
        await answered(pilot, 2)
        first_reply = app.history.session.turn_ids[1][0]
        await select(pilot, 1)
        app.engine.sampling = app.engine.sampling.model_copy(update={"seed": 7})  # another reply
        await pilot.press("ctrl+r")  # branch B: the first reply again, and nothing after
        await answered(pilot, 1)
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        cid = app.conversation_id
        leaf_b = app.history.session.turn_ids[1][0]
        cached = app.backend.cached_tokens
        app.exit()  # leaving saves branch B's state
    app.kv.close()
    assert [(e.kind, e.result) for e in app.kv.events] == [("save", True)]
    with HistoryStore(app.history.store.path) as other:  # another session views branch A
        branch_a = other.view(cid, first_reply)
    again = GemmaChatApp(settings, resume=cid)
    again.sampling = app.sampling
    async with again.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: again.engine is not None, timeout=60)
        await wait_until(pilot, lambda: bool(again.kv.events), timeout=30)
        assert shown(again) == [m.text for m in branch_a]
        (restored,) = again.kv.events
        store, sha = again.history.store, again.model_info.sha256
        on_b = to_conversation(store.get(cid), store.messages(cid, leaf=leaf_b), sha)
        ids_a = resume_ids(again.engine.template, again.conversation)
        saved = cached[: common_prefix(cached, resume_ids(again.engine.template, on_b))]
        shared = common_prefix(saved, ids_a)
        # Only what branch B's saved state shares with branch A (resumed) is restored.
        assert restored.kind == "restore" and restored.result == shared < len(saved)
        await send(pilot, "And a sea?")
        await answered(pilot, 3)
        stats = again.last_done.stats
        assert stats.evaluated_tokens == stats.prompt_tokens - restored.result
    again.kv.close()


async def test_a_search_hit_on_another_branch_opens_that_branch(vocab, store) -> None:
    app = make_app(vocab, store, ["okapi", "gaur"])
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "name an ungulate")
        await answered(pilot, 1)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: shown(app) == ["name an ungulate", "gaur"])
        await answered(pilot, 1)
        (hit,) = store.search("okapi")
        assert await app.resume_conversation(hit.conversation_id, hit.message_id)
        await wait_until(pilot, lambda: shown(app) == ["name an ungulate", "okapi"])
        assert labels(app) == ["", "1/2"]
        assert store.messages(hit.conversation_id)[-1].text == "okapi"  # viewed now
