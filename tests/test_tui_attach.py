"""Attaching files in the app (Pilot, scripted backend with the real Gemma 3 vocabulary):
/read and @path, the chips with each file's tokens, taking one off, the context meter,
Tab completing paths, and what the history keeps."""

from __future__ import annotations

import os

import pytest
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.attachments import Attachment, compose_message
from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.attachment_chips import AttachmentChips


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("Buy pears.\nSell apples.\n")
    (tmp_path / "nuts.txt").write_text("Walnuts and `code`.\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01binary")
    return tmp_path


def make_app(vocab, store=None):
    loader = scripted_loader(vocab, ["Noted."], 0.0, n_ctx=4096)
    return GemmaChatApp(Settings(), loader=loader, store=store)


def chip_labels(app: GemmaChatApp) -> list[str]:
    return [str(button.label) for button in app.query_one(AttachmentChips).query("Button")]


async def test_read_and_at_path_attach_with_token_counts_and_send(vocab, files) -> None:
    store = HistoryStore(files / "history.db")
    app = make_app(vocab, store)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/read notes.md")
        tokenizer = app.engine.template.tokenizer
        notes = Attachment("notes.md", "Buy pears.\nSell apples.\n", 24)
        tokens = len(tokenizer.tokenize(notes.block()))
        await wait_until(pilot, lambda: chip_labels(app) == [f"📎 notes.md · {tokens} tokens ✕"])
        # @path in the text attaches too, as soon as it is typed.
        app.prompt.set_text("compare @nuts.txt with it")
        nuts = Attachment("nuts.txt", "Walnuts and `code`.\n", 20)
        nut_tokens = len(tokenizer.tokenize(nuts.block()))
        await wait_until(pilot, lambda: len(chip_labels(app)) == 2)
        await wait_until(pilot, lambda: f"nuts.txt · {nut_tokens} tokens" in chip_labels(app)[1])
        # The context meter counts the attached files with the typed text.
        message = compose_message([notes, nuts], None, "compare @nuts.txt with it")
        expected = app.engine.count_tokens(app.conversation, message)
        meter = app.query_one("#status-meter")
        await wait_until(pilot, lambda: str(meter.render()) == f"ctx {expected}/4,096")
        await send(pilot, "compare @nuts.txt with it")
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2 and not app.generating)
        assert app.conversation.turns[0].text == message  # files first, then the text
        assert chip_labels(app) == [] and not app.query_one(AttachmentChips).display
        cid = app.conversation_id
    with HistoryStore(files / "history.db") as reopened:
        user = reopened.messages(cid)[0]
    assert user.text == message
    assert user.meta == {
        "attachments": [
            {"name": "notes.md", "size": 24, "tokens": tokens},
            {"name": "nuts.txt", "size": 20, "tokens": nut_tokens},
        ]
    }


async def test_a_chip_takes_its_file_off_and_bad_files_are_refused(vocab, files) -> None:
    app = make_app(vocab)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/read notes.md")
        await send(pilot, "/read blob.bin")
        await send(pilot, "/read nowhere.txt")
        await settle(pilot)
        shown = notifications(app)
        assert any("blob.bin looks like binary data" in n for n in shown), shown
        assert any("nowhere.txt: no such file" in n for n in shown), shown
        await wait_until(pilot, lambda: len(chip_labels(app)) == 1)
        await pilot.click(app.query_one(AttachmentChips).query_one("Button"))
        await wait_until(pilot, lambda: chip_labels(app) == [])
        await send(pilot, "just this")
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        assert app.conversation.turns[0].text == "just this"
        assert app.conversation.turns[1].role is Role.MODEL


async def test_tab_completes_paths_after_read_and_at(vocab, files) -> None:
    app = make_app(vocab)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        os.mkdir(files / "docs")
        (files / "docs" / "guide.md").write_text("x")
        await pilot.press(*"/read no")
        await settle(pilot)
        await pilot.press("tab")
        assert app.prompt.text == "/read notes.md "
        app.prompt.set_text("see @do")
        await settle(pilot)
        await pilot.press("tab")
        assert app.prompt.text == "see @docs/"  # a folder: the path goes on
        await settle(pilot)
        await pilot.press("tab")
        assert app.prompt.text == "see @docs/guide.md "


async def test_a_file_larger_than_the_context_is_answered_part_by_part(vocab, files) -> None:
    text = "\n\n".join(f"Crate {i} holds {i * 3 % 17} pears.\nLot {1000 + i}." for i in range(150))
    (files / "crates.txt").write_text(text + "\n")
    store = HistoryStore(files / "history.db")
    loader = scripted_loader(vocab, lambda n: f"note {n}", 0.002, n_ctx=512)
    app = GemmaChatApp(Settings(), loader=loader, store=store)
    progress: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        bar, show = app.status, app.status.set_speed

        def record(text: str) -> None:  # every progress line shown (each is brief)
            if text.startswith(("map", "reduce")):
                progress.append(text)
            show(text)

        bar.set_speed = record  # type: ignore[method-assign]
        await send(pilot, "/read crates.txt")
        await send(pilot, "Which crate holds the most pears?")
        await wait_until(
            pilot, lambda: len(app.conversation.turns) == 2 and not app.generating, timeout=60
        )
        reply = app.conversation.turns[1]
        cid = app.conversation_id
    assert progress and progress[0].startswith("map 1/")
    assert "part 1 of" in progress[0] and "crates.txt" in progress[0]
    with HistoryStore(files / "history.db") as reopened:
        user, answer = reopened.messages(cid)
    run = answer.meta["map_reduce"]
    assert run["chunks"] >= 5 and run["calls"] == len(run["steps"])
    assert run["steps"][-1]["title"] == "the answer"
    assert reply.text == answer.text == f"note {run['calls'] - 1}"
    assert user.meta["attachments"][0]["name"] == "crates.txt"
    assert user.text.startswith("crates.txt\n```\nCrate 0 holds 0 pears.")
