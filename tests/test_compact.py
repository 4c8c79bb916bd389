"""Compacting long conversations: /compact on the real demo model, context_policy =
"compact" before a reply that would not fit (scripted backend, real vocabulary), the
markers where turns were compacted or dropped, and the originals kept in the history."""

from __future__ import annotations

import pytest
from tui_support import notifications, scripted_loader, send, wait_until

from gemma_chat.backend.local import load_vocab
from gemma_chat.chat.conversation import SUMMARY_INTRO, Conversation, Summary
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import Sampling, Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.history.transfer import export_markdown
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import Notice


def notices(app: GemmaChatApp) -> list[str]:
    return [str(notice.render()) for notice in app.query(Notice)]


def test_a_summary_is_folded_into_the_first_kept_user_turn(demo_path) -> None:
    template = GemmaTemplate(load_vocab(demo_path))
    conversation = Conversation(system="Be brief.")
    for text in ("one", "two", "three"):
        conversation.add_user(text)
        conversation.add_model(f"{text}!", stop_reason=None)  # type: ignore[arg-type]
    conversation.add_user("four")
    conversation.summary = Summary(4, "We counted.")
    view, system = conversation.prompt_view()
    assert [t.text for t in view] == ["three", "three!", "four"]
    ids = template.render(view, system)
    text, _ = template.inspect(ids)
    assert text.startswith(
        f"<bos><start_of_turn>user\nBe brief.\n\n{SUMMARY_INTRO}\nWe counted.\n\nthree<end_of_turn>"
    )
    assert len(conversation.turns) == 7  # the turns themselves stay


@pytest.mark.slow
async def test_compact_on_the_demo_model_keeps_the_originals(demo_path, tmp_path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    app = GemmaChatApp(Settings(model="demo", ctx=1024), store=store)
    app.sampling = app.sampling.model_copy(update={"max_tokens": 12, "seed": 1})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=120)
        app.engine.sampling = app.sampling
        for number, text in enumerate(("My name is Ada.", "I live in Paris."), 1):
            await send(pilot, text)
            await wait_until(
                pilot,
                lambda n=number: not app.generating and len(app.conversation.turns) == 2 * n,
                timeout=120,
            )
        before = app.engine.count_tokens(app.conversation)
        await send(pilot, "/compact")
        await wait_until(pilot, lambda: app.conversation.summary is not None, timeout=120)
        await wait_until(pilot, lambda: not app.generating)
        summary = app.conversation.summary
        assert summary.turns == 2 and summary.text.strip()
        assert any("2 earlier turns compacted into a summary" in n for n in notices(app))
        assert len(app.conversation.turns) == 4  # on screen, all of them
        view, system = app.conversation.prompt_view()
        assert [t.text for t in view] == [t.text for t in app.conversation.turns[2:]]
        assert system == f"{SUMMARY_INTRO}\n{summary.text.strip()}"
        assert app.engine.count_tokens(app.conversation) != before
        await send(pilot, "What is my name?")
        await wait_until(
            pilot, lambda: not app.generating and len(app.conversation.turns) == 6, timeout=120
        )
        cid = app.conversation_id
    with HistoryStore(tmp_path / "history.db") as reopened:
        messages = reopened.messages(cid)
        transcript = export_markdown(reopened, cid)
    assert [m.text for m in messages][:3] == [
        "My name is Ada.",
        messages[1].text,
        "I live in Paris.",
    ]
    assert len(messages) == 6  # the originals stay in the history
    assert messages[4].meta == {"compacted": {"turns": 2, "summary": summary.text}}
    assert "2 earlier turns were compacted into a summary here" in transcript


async def test_context_policy_compact_summarises_before_a_reply_that_would_not_fit(
    demo_path,
) -> None:
    vocab = load_vocab(demo_path)
    long_reply = " ".join(f"fact{i}" for i in range(300))  # capped at max_tokens
    # Replies 0 and 1 fill the context; call 2 is the summary; call 3 the third answer.
    loader = scripted_loader(vocab, lambda n: "Short summary." if n == 2 else long_reply, n_ctx=512)
    settings = Settings(context_policy="compact", sampling=Sampling(max_tokens=200))
    app = GemmaChatApp(settings, loader=loader)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for number in (1, 2, 3):
            await send(pilot, f"Question {number}")
            await wait_until(
                pilot,
                lambda n=number: not app.generating and len(app.conversation.turns) == 2 * n,
            )
        assert app.conversation.summary == Summary(2, "Short summary.")
        assert any("2 earlier turns compacted into a summary" in n for n in notices(app))
        assert not any("left out" in n for n in notifications(app))
        assert app.conversation.turns[-1].text.startswith("fact0 fact1")
        assert app.last_done.stats.dropped_turns == 0


async def test_context_policy_drop_leaves_a_marker(demo_path) -> None:
    vocab = load_vocab(demo_path)
    long_reply = " ".join(f"fact{i}" for i in range(300))
    loader = scripted_loader(vocab, [long_reply], n_ctx=512)
    app = GemmaChatApp(Settings(sampling=Sampling(max_tokens=200)), loader=loader)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for number in (1, 2, 3):
            await send(pilot, f"Question {number}")
            await wait_until(
                pilot,
                lambda n=number: not app.generating and len(app.conversation.turns) == 2 * n,
            )
        await wait_until(pilot, lambda: any("left out" in n for n in notices(app)))
        assert any("2 earlier turns were left out to fit the context" in n for n in notices(app))
        assert app.conversation.summary is None


def test_a_stored_compaction_is_restored_on_resume(tmp_path) -> None:
    from gemma_chat.history.records import MessageRecord
    from gemma_chat.history.turns import to_conversation

    with HistoryStore(tmp_path / "history.db") as store:
        cid = store.create(system=None, params={})
        for role, text in (("user", "Ada"), ("model", "Hi Ada"), ("user", "Paris")):
            store.add(cid, MessageRecord(role, text))
        store.add(cid, MessageRecord("model", "Nice"))
        meta = {"compacted": {"turns": 2, "summary": "The user is Ada."}}
        store.add(cid, MessageRecord("user", "My name?", meta=meta))
        conversation = to_conversation(store.get(cid), store.messages(cid), None)
    assert conversation.summary == Summary(2, "The user is Ada.")
    view, system = conversation.prompt_view()
    assert [t.text for t in view] == ["Paris", "Nice", "My name?"]
    assert system == f"{SUMMARY_INTRO}\nThe user is Ada."
