"""The conversation tree in the store: branches, switching, deleting, searching, the
migration of linear histories (schema 3 and 4 files built with raw SQL), and the JSON
export of a whole tree."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.errors import UsageError
from gemma_chat.generation.events import ReplyDone, ReplyStats
from gemma_chat.history import schema, transfer
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import HistoryStore, MessageRecord, NotFound

STAMP = "2026-01-01T00:00:00.000000+00:00"
PARAMS = {"sampling": {"temperature": 0.5}}


@pytest.fixture
def store(tmp_path: Path):
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


def texts(messages: list[MessageRecord]) -> list[str]:
    return [m.text for m in messages]


def three_branches(store: HistoryStore) -> tuple[int, dict[str, MessageRecord]]:
    """Q1 with two replies (A1, A1b); after A1, Q2 and an edit of it, Q2b; each answered.

    Branches: Q1 A1 Q2 A2 · Q1 A1 Q2b A2b · Q1 A1b (the one viewed is the last written).
    """
    cid = store.create(title="tree")
    m: dict[str, MessageRecord] = {}

    def add(name: str, role: str, parent: str | None) -> None:
        parent_id = None if parent is None else m[parent].id
        reply_to = parent_id if role == "model" else None
        m[name] = store.add(cid, MessageRecord(role, name, parent_id=parent_id, reply_to=reply_to))

    add("Q1", "user", None)
    add("A1", "model", "Q1")
    add("Q2", "user", "A1")
    add("A2", "model", "Q2")
    add("Q2b", "user", "A1")
    add("A2b", "model", "Q2b")
    add("A1b", "model", "Q1")
    return cid, m


def test_a_branch_is_followed_from_the_start_to_its_end(store: HistoryStore) -> None:
    cid, m = three_branches(store)
    assert texts(store.messages(cid)) == ["Q1", "A1b"]  # the last added is viewed
    assert texts(store.messages(cid, leaf=m["A2"].id)) == ["Q1", "A1", "Q2", "A2"]
    assert texts(store.messages(cid, leaf=m["A2b"].id)) == ["Q1", "A1", "Q2b", "A2b"]
    assert store.messages(cid, leaf=10**6) == []
    assert len(store.all_messages(cid)) == 7 == store.get(cid).message_count
    assert texts(store.siblings(cid, m["Q2b"].id)) == ["Q2", "Q2b"]
    assert texts(store.siblings(cid, m["A1"].id)) == ["A1", "A1b"]
    assert texts(store.siblings(cid, m["A2"].id)) == ["A2"]
    with pytest.raises(NotFound):
        store.siblings(cid, 10**6)


def test_viewing_a_message_opens_its_newest_branch_and_is_remembered(
    store: HistoryStore, tmp_path: Path
) -> None:
    cid, m = three_branches(store)
    assert texts(store.view(cid, m["A1"].id)) == ["Q1", "A1", "Q2b", "A2b"]  # newest below
    assert texts(store.view(cid, m["Q2"].id)) == ["Q1", "A1", "Q2", "A2"]
    with HistoryStore(tmp_path / "history.db") as again:  # resuming opens it
        assert again.get(cid).active_id == m["A2"].id
        assert texts(again.messages(cid)) == ["Q1", "A1", "Q2", "A2"]
    # The next message continues the branch viewed.
    nxt = store.add(cid, MessageRecord("user", "Q3"))
    assert nxt.parent_id == m["A2"].id
    with pytest.raises(NotFound):
        store.view(cid, 10**6)
    other = store.create()
    with pytest.raises(NotFound, match="no message"):
        store.add(other, MessageRecord("user", "x", parent_id=m["Q1"].id))


def test_deleting_a_message_takes_what_follows_it_and_the_conversation_its_tree(
    store: HistoryStore,
) -> None:
    cid, m = three_branches(store)
    store.view(cid, m["A2b"].id)
    assert store.delete_messages(cid, [m["Q2b"].id]) == 2
    assert texts(store.messages(cid)) == ["Q1", "A1"]  # the branch viewed ends at the parent
    assert len(store.all_messages(cid)) == 5
    store.delete(cid)
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM messages_fts").fetchone()[0] == 0


def test_search_finds_messages_on_every_branch(store: HistoryStore) -> None:
    cid = store.create()
    q = store.add(cid, MessageRecord("user", "name an ungulate"))
    okapi = store.add(cid, MessageRecord("model", "okapi", parent_id=q.id))
    store.add(cid, MessageRecord("model", "gaur", parent_id=q.id))
    assert texts(store.messages(cid)) == ["name an ungulate", "gaur"]
    (hit,) = store.search("okapi")  # not on the branch viewed, and found
    assert hit.message_id == okapi.id
    assert texts(store.view(cid, hit.message_id)) == ["name an ungulate", "okapi"]


def _version_3_file(db: Path) -> None:
    """A linear history as gemma-chat 0.3 wrote it, with raw SQL: an unanswered
    question at the end, and in a second conversation two writers' rows interleaved."""
    conn = sqlite3.connect(db, isolation_level=None)
    schema.migrate(conn, target=3)
    for cid in (1, 2):
        conn.execute(
            "INSERT INTO conversations (id, uuid, title, params, created_at, updated_at) "
            "VALUES (?, ?, 'old', '{}', ?, ?)",
            (cid, f"u-{cid}", STAMP, STAMP),
        )
    rows = [
        (1, 1, "user", "what do axolotls eat", None),
        (2, 1, "model", "Worms.", 1),
        (3, 1, "user", "and", None),
        (4, 1, "model", "Fish", 3),
        (5, 1, "user", "unanswered", None),
        (6, 2, "user", "A asks", None),
        (7, 2, "user", "B asks", None),
        (8, 2, "model", "B answered", 7),
        (9, 2, "model", "A answered", 6),
    ]
    for seq, (mid, cid, role, text, reply_to) in enumerate(rows):
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, text, reply_to, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (mid, cid, seq, role, text, reply_to, STAMP),
        )
    conn.close()


def test_a_version_3_file_becomes_single_path_trees(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    _version_3_file(db)
    with HistoryStore(db) as store:
        assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 5
        first = store.messages(1)
        assert texts(first) == ["what do axolotls eat", "Worms.", "and", "Fish", "unanswered"]
        assert [m.parent_id for m in first] == [None, 1, 2, 3, 4]
        assert store.get(1).active_id == 5
        # Interleaved writers read as they were shown: each answer after its question.
        assert texts(store.messages(2)) == ["A asks", "A answered", "B asks", "B answered"]
        assert len(store.all_messages(2)) == 4
        columns = [row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(messages)")]
        assert "parent_id" in columns and "replaced_by" not in columns
        assert len(store.search("axolotls")) == 1


def test_a_version_4_file_keeps_what_was_replaced_as_sibling_branches(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    conn = sqlite3.connect(db, isolation_level=None)
    schema.migrate(conn, target=4)
    conn.execute(
        "INSERT INTO conversations (id, uuid, title, params, created_at, updated_at) "
        "VALUES (1, 'u', 't', '{}', ?, ?)",
        (STAMP, STAMP),
    )
    # Q1 A1, A1 regenerated as A1b; then Q2 A2 edited into Q2b A2b.
    rows = [
        (1, "user", "Q1", None, None),
        (2, "model", "A1", 1, 3),
        (3, "model", "A1b", 1, None),
        (4, "user", "Q2", None, 6),
        (5, "model", "A2", 4, 6),
        (6, "user", "Q2b", None, None),
        (7, "model", "A2b", 6, None),
    ]
    for seq, (mid, role, text, reply_to, by) in enumerate(rows):
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, text, reply_to, "
            "replaced_by, created_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
            (mid, seq, role, text, reply_to, by, STAMP),
        )
    conn.close()
    with HistoryStore(db) as store:
        assert texts(store.messages(1)) == ["Q1", "A1b", "Q2b", "A2b"]  # as it was shown
        assert texts(store.siblings(1, 3)) == ["A1", "A1b"]
        assert texts(store.siblings(1, 6)) == ["Q2", "Q2b"]
        assert texts(store.messages(1, leaf=5)) == ["Q1", "A1b", "Q2", "A2"]
        assert texts(store.messages(1, leaf=2)) == ["Q1", "A1"]


def test_a_tree_with_three_branches_round_trips_byte_identical(
    store: HistoryStore, tmp_path: Path
) -> None:
    cid, m = three_branches(store)
    store.view(cid, m["Q2"].id)
    exported = transfer.export_json(store, cid)
    document = json.loads(exported)
    assert document["version"] == 3
    assert [(x["text"], x["parent"]) for x in document["messages"]] == [
        ("Q1", None),
        ("A1", 0),
        ("Q2", 1),
        ("A2", 2),
        ("Q2b", 1),
        ("A2b", 4),
        ("A1b", 0),
    ]
    assert document["conversation"]["active"] == 3
    with HistoryStore(tmp_path / "other.db") as other:
        imported = transfer.import_json(other, exported)
        assert transfer.export_json(other, imported) == exported
        assert texts(other.messages(imported)) == ["Q1", "A1", "Q2", "A2"]


@pytest.mark.parametrize(
    ("parents", "problem"),
    [
        ([1, 0], "the links go round in a circle"),
        ([0, None], "the links go round in a circle"),
        ([None, 2], "messages.1.parent: 2 is not the position of a message"),
    ],
)
def test_an_import_whose_parents_loop_or_point_nowhere_is_refused(
    store: HistoryStore, parents: list[int | None], problem: str
) -> None:
    document = {
        "format": "gemma-chat-conversation",
        "version": 3,
        "conversation": {"uuid": "u", "title": "t", "created_at": "", "updated_at": ""},
        "messages": [
            {"role": "user", "text": "x", "created_at": "", "parent": parent} for parent in parents
        ],
    }
    with pytest.raises(UsageError, match=problem):
        transfer.import_json(store, json.dumps(document))


# ---------------------------------------------------- found by a red-team review


def _done(text: str) -> ReplyDone:
    return ReplyDone(
        text, StopReason.END_OF_TURN, None, ReplyStats(3, 3, 1, 0.1, 10.0, 0.2, 0, seed=1)
    )


def test_a_failed_reply_does_not_delete_what_another_process_added_after_its_question(
    tmp_path: Path,
) -> None:
    """The app stores Q and its reply is still generating; `ask -c` in another process
    joins its question to the unanswered Q and is answered. The app's reply then fails:
    taking Q back must not take what the other process added after it."""
    path = tmp_path / "history.db"
    with HistoryStore(path) as app_store, HistoryStore(path) as ask_store:
        app = ConversationSession(app_store)
        conversation = Conversation()
        conversation.add_user("Q from the app")
        app.record_user(conversation, PARAMS)
        cid = app.conversation_id
        # ask -c: continues the branch viewed, an unanswered question joined to its own.
        other = ConversationSession(ask_store, cid, ask_store.messages(cid))
        theirs = Conversation()
        theirs.add_user("Q from the app\n\nQ from ask")
        other.record_user(theirs, PARAMS, "Q from ask")
        theirs.add_model("ask's answer", StopReason.END_OF_TURN)
        other.record_reply(_done("ask's answer"), theirs, model="m", model_sha256=None)
        # The app's reply fails: its question is taken back.
        conversation.turns.pop()
        app.unsend(0)
        texts = [m.text for m in app_store.all_messages(cid)]
        assert "ask's answer" in texts and "Q from ask" in texts, texts


def test_an_export_with_no_active_branch_round_trips_byte_identical(store) -> None:
    """A version 3 document may say "active": null: it exports again as it was."""
    cid = store.create(system=None, params={}, origin="app")
    q = store.add(cid, MessageRecord("user", "Q", parent_id=None))
    store.add(cid, MessageRecord("model", "A", reply_to=q.id, parent_id=q.id))
    document = json.loads(transfer.export_json(store, cid))
    document["conversation"]["active"] = None
    document["conversation"]["uuid"] = "another-uuid"
    document["conversation"]["id"] = 999
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    again = transfer.export_json(store, transfer.import_json(store, text))
    assert json.loads(again)["conversation"]["active"] is None


def test_switching_near_the_top_of_a_long_branch_is_one_query_not_one_per_message(
    store,
) -> None:
    """A switch near the top of a long conversation finds the newest leaf below in one
    statement, not one per message (it runs in a write, on the UI thread)."""
    cid = store.create(system=None, params={}, origin="app")
    parent = None
    first_reply = None
    for i in range(200):  # 400 messages: one query per message would be 400
        q = store.add(cid, MessageRecord("user", f"q{i}", parent_id=parent))
        a = store.add(cid, MessageRecord("model", f"a{i}", reply_to=q.id, parent_id=q.id))
        first_reply = first_reply or a.id
        parent = a.id
    statements: list[str] = []
    with store._write() as conn:  # count what one view() runs
        conn.set_trace_callback(statements.append)
    store.view(cid, first_reply)
    with store._write() as conn:
        conn.set_trace_callback(None)
    assert len(statements) < 10, f"{len(statements)} statements for one switch"


def test_a_reply_and_a_joined_question_after_one_question_are_versions_of_each_other(
    store,
) -> None:
    """Q unanswered (a run died); the app's Ctrl+R answers it (Q -> R1) while `ask -c`
    joins its question to it and is answered (Q -> Q2 -> R2): each branch shows a label
    that leads to the other."""
    from gemma_chat.history.branches import turn_versions
    from gemma_chat.history.turns import stored_turns

    cid = store.create(system=None, params={}, origin="app")
    q = store.add(cid, MessageRecord("user", "Q", parent_id=None))
    r1 = store.add(cid, MessageRecord("model", "R1", reply_to=q.id, parent_id=q.id))
    q2 = store.add(cid, MessageRecord("user", "Q2", parent_id=q.id))
    r2 = store.add(cid, MessageRecord("model", "R2", reply_to=q2.id, parent_id=q2.id))
    links = store.links(cid)
    for leaf in (r1.id, r2.id):
        turns = [t.ids for t in stored_turns(store.messages(cid, leaf=leaf))]
        labels = [v.label if v else "" for v in turn_versions(links, turns)]
        assert any(labels), f"branch to {leaf}: no way to the other branch ({labels})"
