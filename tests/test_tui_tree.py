"""The conversation tree in the app: editing any message and regenerating any reply add
versions ("‹ 2/3 ›"), Alt+Left/Right and [ ] switch between them, the next message
continues the branch on screen, and resuming opens the branch last viewed."""

from __future__ import annotations

import pytest
from tui_support import scripted_loader, send, settle, wait_until

from gemma_chat.backend.local import load_vocab
from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.help import HelpScreen
from gemma_chat.tui.widgets.chat_log import ModelReply, UserMessage


@pytest.fixture(scope="module")
def vocab(demo_path):
    return load_vocab(demo_path)


@pytest.fixture
def store(tmp_path):
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


def make_app(vocab, store, replies, resume=None) -> GemmaChatApp:
    loader = scripted_loader(vocab, replies)
    return GemmaChatApp(Settings(), loader=loader, store=store, resume=resume)


def shown(app: GemmaChatApp) -> list[str]:
    return [w.text for w in app.switcher.turn_widgets()]


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


async def answered(pilot, count: int) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
    )
    await settle(pilot)


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
        await select(pilot, 3)
        await pilot.press("alt+left")
        await wait_until(pilot, lambda: shown(app) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"])
        assert labels(app)[3] == "1/2"
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
