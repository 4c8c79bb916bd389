"""The conversation session that ``ask`` and the app share, on a real SQLite file
(no Pilot): question ids, creating and deleting-if-empty, retry, edit, unsending, and
saving turned off by the first store failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_chat.chat.conversation import Conversation, Role, StopReason
from gemma_chat.generation.events import ReplyDone, ReplyStats
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import HistoryStore, MessageRecord

PARAMS = {"sampling": {"temperature": 0.5}}


@pytest.fixture
def store(tmp_path: Path):
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


def done(text: str) -> ReplyDone:
    return ReplyDone(
        text, StopReason.END_OF_TURN, None, ReplyStats(3, 3, 1, 0.1, 10.0, 0.2, 0, seed=1)
    )


def ask(session: ConversationSession, conversation: Conversation, text: str) -> int | None:
    conversation.add_user(text)
    return session.record_user(conversation, PARAMS)


def answer(session: ConversationSession, conversation: Conversation, text: str) -> int | None:
    conversation.add_model(text, StopReason.END_OF_TURN)
    return session.record_reply(done(text), conversation, model="m", model_sha256=None)


def rows(store: HistoryStore, cid: int) -> list[tuple[str, str, int | None]]:
    return [(m.role, m.text, m.reply_to) for m in store.messages(cid)]


def test_a_new_conversation_is_created_with_its_first_message(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation(system="Be brief.")
    assert session.conversation_id is None and not session.created
    question = ask(session, conversation, "Hi")
    cid = session.conversation_id
    assert cid is not None and session.created and session.saving
    assert store.get(cid).system == "Be brief." and store.get(cid).params == PARAMS
    answer(session, conversation, "Hello")
    assert rows(store, cid) == [("user", "Hi", None), ("model", "Hello", question)]
    assert session.close() is False  # not empty: kept
    assert store.get(cid).id == cid


def test_unsending_the_only_message_deletes_the_conversation_it_created(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation()
    ask(session, conversation, "Too long to answer")
    cid = session.conversation_id
    conversation.turns.pop()
    session.unsend(len(conversation.turns))
    assert session.close() is True
    assert session.conversation_id is None
    assert [record.id for record in store.conversations()] == []
    assert cid is not None


def test_a_continued_conversation_keeps_what_was_there(store) -> None:
    cid = store.create()
    old_question = store.add(cid, MessageRecord("user", "Old question")).id
    store.add(cid, MessageRecord("model", "Old answer", stop_reason="end_of_turn"))
    messages = store.messages(cid)
    session = ConversationSession(store, cid, messages)
    conversation = Conversation()
    conversation.add_user("Old question")
    conversation.add_model("Old answer", StopReason.END_OF_TURN)
    assert session.question_id(1) == old_question
    ask(session, conversation, "New question")
    conversation.turns.pop()
    session.unsend(len(conversation.turns))  # only what this session wrote goes
    assert session.close() is False  # never deletes a conversation from elsewhere
    assert [text for _, text, _ in rows(store, cid)] == ["Old question", "Old answer"]
    assert not session.created


def test_a_joined_question_is_stored_alone_and_answered_by_its_id(store) -> None:
    # ask: an unanswered question from a run that died is answered with the new one.
    cid = store.create()
    store.add(cid, MessageRecord("user", "First"))
    session = ConversationSession(store, cid, store.messages(cid))
    conversation = Conversation()
    conversation.add_user("First\n\nSecond")
    session.record_user(conversation, PARAMS, "Second")
    session.unsend(0)  # it cannot be answered: only the message this session wrote goes
    assert rows(store, cid) == [("user", "First", None)]
    new = session.record_user(conversation, PARAMS, "Second")
    session.record_reply(done("Both"), conversation, model="m", model_sha256=None)
    assert rows(store, cid) == [
        ("user", "First", None),
        ("user", "Second", None),
        ("model", "Both", new),
    ]


def test_a_retry_replaces_the_old_reply_and_a_failed_retry_keeps_it(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation()
    question = ask(session, conversation, "Q")
    answer(session, conversation, "A1")
    cid = session.conversation_id
    assert cid is not None
    conversation.turns.pop()
    session.begin_retry(len(conversation.turns))
    assert session.replacing  # the old reply stays stored until replaced
    assert [text for _, text, _ in rows(store, cid)] == ["Q", "A1"]
    answer(session, conversation, "A2")
    assert rows(store, cid) == [("user", "Q", None), ("model", "A2", question)]
    # A retry that fails keeps both the question and the old reply.
    conversation.turns.pop()
    session.begin_retry(len(conversation.turns))
    conversation.turns.pop()  # the question goes back into the input
    session.unsend(len(conversation.turns))
    assert [text for _, text, _ in rows(store, cid)] == ["Q", "A2"]


def test_an_edited_message_is_a_sibling_and_the_exchange_stays_on_its_branch(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation()
    ask(session, conversation, "Q1")
    answer(session, conversation, "A1")
    old_q = ask(session, conversation, "Q2")
    old_a = answer(session, conversation, "A2")
    cid = session.conversation_id
    assert cid is not None
    # Sent in place of the last exchange: the new question is a sibling of the old
    # one, whose branch (the old question and reply) is kept.
    del conversation.turns[2:]
    session.begin_edit(len(conversation.turns))
    new_q = ask(session, conversation, "Q2 edited")
    assert new_q is not None
    answer(session, conversation, "A2'")
    assert [text for _, text, _ in rows(store, cid)] == ["Q1", "A1", "Q2 edited", "A2'"]
    assert [m.id for m in store.siblings(cid, new_q)] == [old_q, new_q]
    assert [m.text for m in store.messages(cid, leaf=old_a)] == ["Q1", "A1", "Q2", "A2"]
    assert session.turn_of(new_q) == 2


def test_an_edited_message_whose_reply_fails_gives_the_exchange_back(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation()
    old_q = ask(session, conversation, "Q")
    old_a = answer(session, conversation, "A")
    cid = session.conversation_id
    assert cid is not None
    kept = conversation.turns[:]
    del conversation.turns[:]
    session.begin_edit(0)
    ask(session, conversation, "Q edited")
    assert [text for _, text, _ in rows(store, cid)] == ["Q edited"]
    conversation.turns.pop()  # its reply failed: it goes back into the input
    session.unsend(0)
    conversation.turns.extend(kept)  # and the exchange it was to replace is back
    assert [text for _, text, _ in rows(store, cid)] == ["Q", "A"]
    assert session.turn_of(old_q) == 0 and session.turn_of(old_a) == 1
    assert session.close() is False  # not an empty conversation


def test_a_failed_retry_puts_the_old_reply_back_as_the_last_turn(store) -> None:
    session = ConversationSession(store)
    conversation = Conversation()
    ask(session, conversation, "Q")
    old = answer(session, conversation, "A1")
    conversation.turns.pop()
    session.begin_retry(len(conversation.turns))
    session.cancel_retry()
    assert session.turn_of(old) == 1 and not session.replacing


def test_the_first_store_failure_is_reported_once_and_ends_saving(store, tmp_path) -> None:
    errors: list[Exception] = []
    session = ConversationSession(store, on_error=errors.append)
    conversation = Conversation()
    ask(session, conversation, "Q")
    cid = session.conversation_id
    assert cid is not None
    with HistoryStore(tmp_path / "history.db") as elsewhere:
        elsewhere.delete(cid)  # another process deleted it
    assert answer(session, conversation, "A") is None
    assert len(errors) == 1 and not session.saving
    assert ask(session, conversation, "Again") is None  # nothing more is written
    assert len(errors) == 1
    assert [record.id for record in store.conversations()] == []


def test_without_an_error_handler_a_store_failure_is_raised(store, tmp_path) -> None:
    # ask: a store failure is a one-line error (exit 1).
    session = ConversationSession(store)
    conversation = Conversation()
    ask(session, conversation, "Q")
    cid = session.conversation_id
    assert cid is not None
    with HistoryStore(tmp_path / "history.db") as elsewhere:
        elsewhere.delete(cid)
    from gemma_chat.errors import GemmaChatError

    with pytest.raises(GemmaChatError):
        answer(session, conversation, "A")


def test_saving_off_or_no_store_writes_nothing(store) -> None:
    for session in (ConversationSession(store, enabled=False), ConversationSession(None)):
        conversation = Conversation()
        assert ask(session, conversation, "Q") is None
        assert session.conversation_id is None and not session.saving
    assert store.conversations() == []
    assert conversation.turns[0].role is Role.USER
