"""The history store on real SQLite files: schema and migrations, search, export and
import, corrupt files, and crash safety with real processes (kill -9, two writers)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.errors import UsageError
from gemma_chat.history import schema, transfer
from gemma_chat.history.ids import KEEP_ID_LIMIT
from gemma_chat.history.recording import Recorder, params_of, restore_params
from gemma_chat.history.records import SNIPPET_CLOSE, SNIPPET_LENGTH, SNIPPET_OPEN
from gemma_chat.history.store import (
    CorruptStore,
    HistoryStore,
    MessageRecord,
    NotFound,
    StoreError,
    Unstorable,
    fts_query,
    move_aside,
    store_file,
    title_from,
    to_conversation,
)
from gemma_chat.history.turns import stored_turns

WRITER = Path(__file__).with_name("history_writer.py")


@pytest.fixture
def store(tmp_path: Path):
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


def test_default_location_follows_the_data_dir(tmp_path: Path) -> None:
    assert store_file() == tmp_path / "data" / "history.db"
    with HistoryStore() as opened:
        assert opened.path == store_file()
    assert store_file().exists()


def test_new_store_uses_wal_and_the_current_schema(store: HistoryStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION == 5


def test_migrates_a_first_version_database_keeping_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    schema.migrate(conn, target=1)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute(
        "INSERT INTO conversations (uuid, title, system, params, created_at, updated_at) "
        "VALUES ('u-1', 'Old chat', 'be kind', '{}', '2026-01-01T00:00:00.000000+00:00', "
        "'2026-01-01T00:00:00.000000+00:00')"
    )
    for seq, (role, text) in enumerate(
        [("user", "what do axolotls eat"), ("model", "Worms."), ("user", "and"), ("model", "Fish")]
    ):
        conn.execute(
            "INSERT INTO messages (conversation_id, seq, role, text, created_at) VALUES "
            "(1, ?, ?, ?, '2026-01-01T00:00:00.000000+00:00')",
            (seq, role, text),
        )
    conn.close()
    with HistoryStore(db) as store:
        assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 5
        assert store.get(1).title == "Old chat"
        messages = store.messages(1)
        assert [m.text for m in messages] == ["what do axolotls eat", "Worms.", "and", "Fish"]
        hits = store.search("axolotl")  # version 2's index covers the old messages
        assert [(h.conversation_id, h.seq) for h in hits] == [(1, 0)]
        # version 3 linked each old reply to its question, and counts ids on from 1
        assert [m.reply_to for m in messages] == [None, messages[0].id, None, messages[2].id]
        assert store.create() == 2
        # version 4: no meta, no origin; version 5: one branch, ending where it did
        assert [m.parent_id for m in messages] == [None, *(m.id for m in messages[:-1])]
        assert all(m.meta is None for m in messages) and store.get(1).origin is None
        assert store.get(1).message_count == 4 and store.get(1).active_id == messages[-1].id


def test_a_newer_schema_is_refused_not_guessed(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    HistoryStore(db).close()
    sqlite3.connect(db, isolation_level=None).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match=r"newer gemma-chat \(schema 99"):
        HistoryStore(db)


def test_messages_are_numbered_and_the_first_one_titles_the_conversation(
    store: HistoryStore,
) -> None:
    cid = store.create(system="terse")
    assert store.get(cid).title == "Untitled"
    first = store.add(cid, MessageRecord("user", "\n  Explain   the  KV cache\nplease"))
    second = store.add(cid, MessageRecord("model", "It caches.", stop_reason="end_of_turn"))
    assert (first.seq, second.seq) == (0, 1) and first.id and second.id
    record = store.get(cid)
    assert record.title == "Explain the KV cache" and record.message_count == 2
    assert record.updated_at >= record.created_at
    assert title_from("x" * 200).endswith("…") and len(title_from("x" * 200)) == 60


def test_everything_about_a_reply_round_trips(store: HistoryStore) -> None:
    cid = store.create()
    message = MessageRecord(
        "model",
        "Ünïcode ✓ and 🦙",
        stop_reason="max_tokens",
        partial=True,
        prompt_tokens=120,
        completion_tokens=64,
        ttft_s=0.25,
        tokens_per_s=33.5,
        model="gemma-2-9b-it-Q4_K_M.gguf",
        model_sha256="ab" * 32,
        sampling={"temperature": 1.0, "seed": 4242},
        token_ids=(2, 262143, 0, 106),
    )
    stored = store.add(cid, message)
    (read,) = store.messages(cid)
    assert read == stored


def test_conversations_are_listed_newest_first(store: HistoryStore) -> None:
    a, b, c = (store.create(title=t) for t in "abc")
    store.add(a, MessageRecord("user", "bump a"))
    assert [r.id for r in store.conversations()] == [a, c, b]
    assert store.latest().id == a  # type: ignore[union-attr]
    assert [r.id for r in store.conversations(limit=2)] == [a, c]


def test_rename_delete_messages_and_missing_ids(store: HistoryStore) -> None:
    cid = store.create()
    for n in range(4):
        store.add(cid, MessageRecord("user" if n % 2 == 0 else "model", f"kiwi {n}"))
    store.rename(cid, "  Fruit   talk ")
    assert store.get(cid).title == "Fruit talk"
    with pytest.raises(UsageError, match="blank"):
        store.rename(cid, "   ")
    later = [m.id for m in store.messages(cid)[2:]]
    assert store.delete_messages(cid, later) == 2
    assert store.delete_messages(cid + 1, [store.messages(cid)[0].id]) == 0  # not its own
    assert [m.text for m in store.messages(cid)] == ["kiwi 0", "kiwi 1"]
    assert store.add(cid, MessageRecord("user", "again")).seq == 2
    store.delete(cid)
    assert store.search("kiwi") == []  # the index forgets deleted messages
    assert sqlite3.connect(store.path).execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    for call in (store.get, store.delete, lambda i: store.rename(i, "x")):
        with pytest.raises(NotFound, match=f"no conversation {cid}"):
            call(cid)
    with pytest.raises(NotFound):
        store.add(cid, MessageRecord("user", "into the void"))


def test_search_matches_words_prefixes_and_accents(store: HistoryStore) -> None:
    cid = store.create(title="Cafés")
    store.add(cid, MessageRecord("user", "Where is the best café in Zürich?"))
    store.add(cid, MessageRecord("model", "Try the one near the lake.", stop_reason="end_of_turn"))
    other = store.create(title="Other")
    store.add(other, MessageRecord("user", "lakes of Finland"))
    hits = store.search("cafe zurich")
    assert [(h.conversation_id, h.seq, h.role) for h in hits] == [(cid, 0, "user")]
    assert hits[0].highlighted("[", "]") == "Where is the best [café] in [Zürich]?"
    assert {h.conversation_id for h in store.search("lake")} == {cid, other}  # prefix
    assert store.search("lake Finland")[0].conversation_id == other


@pytest.mark.parametrize("text", ['"unbalanced', "NEAR(a b)", "a AND OR NOT", "x* ^y", "col:val"])
def test_search_never_interprets_fts_syntax(store: HistoryStore, text: str) -> None:
    cid = store.create()
    store.add(cid, MessageRecord("user", text))
    assert [h.conversation_id for h in store.search(text)] == [cid]


def test_search_needs_a_word(store: HistoryStore) -> None:
    with pytest.raises(UsageError, match="word to search"):
        store.search(" *** ")
    assert fts_query('say "hi"') == '"say"* """hi"""*'


# ------------------------------------------------------------------ corrupt files


def test_a_file_that_is_not_a_database_is_named_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    with pytest.raises(CorruptStore) as caught:
        HistoryStore(db)
    assert caught.value.path == db
    message = str(caught.value)
    assert str(db) in message and "move-aside" in message and "\n" not in message
    assert db.read_bytes() == garbage  # never replaced


def test_a_damaged_database_is_reported_when_read(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with HistoryStore(db) as store:
        cid = store.create()
        for n in range(300):
            store.add(cid, MessageRecord("user", f"message {n} " + "padding " * 40))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    roots = dict(
        conn.execute(
            "SELECT name, rootpage FROM sqlite_master "
            "WHERE name IN ('messages', 'messages_fts_data')"
        ).fetchall()
    )
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    for root in roots.values():  # wreck the root pages of the messages and their index
        start = (root - 1) * page
        data[start : start + page] = b"\xa5" * page
    db.write_bytes(bytes(data))
    store = HistoryStore(db)  # the header is intact: opening works
    with pytest.raises(CorruptStore, match="malformed"):
        store.messages(cid)
    with pytest.raises(CorruptStore, match="vtable constructor failed"):
        store.search("message")  # FTS5 reports its damaged index in its own words
    store.close()


def test_move_aside_renames_without_deleting(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    db.write_bytes(b"not a database at all" * 100)
    (tmp_path / "history.db-wal").write_bytes(b"wal bytes")
    moved = move_aside(db)
    assert not db.exists() and moved.read_bytes() == b"not a database at all" * 100
    assert moved.name.startswith("history.db.unreadable-")
    assert moved.with_name(moved.name + "-wal").read_bytes() == b"wal bytes"
    with HistoryStore(db) as fresh:  # a new store starts in its place
        assert fresh.conversations() == []
    db.unlink()
    (tmp_path / "history.db-wal").unlink(missing_ok=True)
    db.write_bytes(b"again")
    second = move_aside(db)
    assert second != moved and second.exists() and moved.exists()
    with pytest.raises(StoreError, match="no history database"):
        move_aside(tmp_path / "missing.db")


def test_a_path_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    db.mkdir()
    with pytest.raises(StoreError, match=f"cannot open the history database {db}"):
        HistoryStore(db)
    assert db.is_dir()


# ------------------------------------------------------------------- crash safety


def _writer(
    db: Path,
    tag: str,
    count: int,
    conversation: int | None = None,
    go=None,
    parent: int | None = None,
):
    args = [sys.executable, str(WRITER), str(db), tag, str(count)]
    if conversation is not None:
        args.append(str(conversation))
    env = {**os.environ, "GO_FILE": str(go), "PAUSE_S": "0.002"} if go else None
    if parent is not None:
        env = {**(env or os.environ), "PARENT": str(parent)}
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)


def test_kill_9_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with HistoryStore(db) as store:
        kept = store.create(title="before")
        store.add(kept, MessageRecord("user", "written before the crash"))
    child = _writer(db, "victim", 100_000)
    confirmed = 0
    assert child.stdout is not None
    for line in child.stdout:
        confirmed = int(line.split()[1])
        if confirmed >= 301:  # mid-conversation: a question without its answer
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with HistoryStore(db) as store:
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [m.text for m in store.messages(kept)] == ["written before the crash"]
        victim = next(r for r in store.conversations() if r.system == "victim")
        messages = store.messages(victim.id)
        assert len(messages) >= confirmed  # every acknowledged message survived
        assert [m.seq for m in messages] == list(range(len(messages)))
        assert len(store.search("victim")) == min(len(messages), 50)
        assert store.add(victim.id, MessageRecord("user", "after")).seq == len(messages)


def test_writers_on_two_branches_of_one_conversation_lose_nothing(tmp_path: Path) -> None:
    """Two processes continue one conversation from the same reply at once (a third
    writes its own): each grows its own branch, in its own order, every reply after
    its question, and nothing is lost."""
    db = tmp_path / "history.db"
    go = tmp_path / "go"
    with HistoryStore(db) as store:
        shared = store.create(title="shared")
        seed = store.add(shared, MessageRecord("user", "seed question"))
        seed_reply = store.add(shared, MessageRecord("model", "seed answer", parent_id=seed.id))
    pairs = 120
    children = [
        _writer(db, "alpha", pairs, shared, go, parent=seed_reply.id),
        _writer(db, "beta", pairs, shared, go, parent=seed_reply.id),
        _writer(db, "gamma", pairs, None, go),
    ]
    for child in children:  # every writer has the store open; then all start at once
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    go.touch()
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
    with HistoryStore(db) as store:
        everything = store.all_messages(shared)
        assert len(everything) == 2 + 4 * pairs
        assert [m.seq for m in everything] == list(range(2 + 4 * pairs))
        tags = [m.text.split()[0] for m in everything]
        switches = sum(1 for a, b in itertools.pairwise(tags) if a != b)
        assert switches > 10, "the writers did not overlap"
        by_text = {m.text: m for m in everything}
        for tag in ("alpha", "beta"):
            leaf = by_text[f"{tag} answer {pairs - 1}"]
            branch = [m.text for m in store.messages(shared, leaf=leaf.id)]
            assert branch == ["seed question", "seed answer"] + [
                text for n in range(pairs) for text in (f"{tag} question {n}", f"{tag} answer {n}")
            ]
        first = store.siblings(shared, by_text["alpha question 0"].id)
        assert {m.text for m in first} == {"alpha question 0", "beta question 0"}
        gamma = next(r for r in store.conversations() if r.system == "gamma")
        assert store.get(gamma.id).message_count == 2 * pairs
        total = sqlite3.connect(db).execute("SELECT count(*) FROM messages_fts").fetchone()[0]
        assert total == 2 + 6 * pairs


# ------------------------------------------------------- conversations and recording


def test_to_conversation_keeps_token_ids_for_the_same_model_only(store: HistoryStore) -> None:
    cid = store.create(system="sys")
    store.add(cid, MessageRecord("user", "hi"))
    store.add(
        cid,
        MessageRecord(
            "model", "hello", stop_reason="cancelled", model_sha256="aa", token_ids=(5, 6)
        ),
    )
    store.add(cid, MessageRecord("user", "lost reply"))  # the process died mid-reply
    store.add(cid, MessageRecord("user", "asked again"))
    record, messages = store.get(cid), store.messages(cid)
    same = to_conversation(record, messages, "aa")
    assert same.system == "sys"
    assert same.turns[1].token_ids == (5, 6) and same.turns[1].stop_reason is StopReason.CANCELLED
    assert same.turns[1].partial
    assert same.pending_user is not None
    assert same.pending_user.text == "lost reply\n\nasked again"
    other = to_conversation(record, messages, "bb")
    assert other.turns[1].token_ids is None


def test_recorder_stores_a_real_reply_with_what_reproduces_it(
    store: HistoryStore, tiny_engine
) -> None:
    engine = tiny_engine("runaway", seed=None)
    conversation = Conversation(system="Be brief.")
    recorder = Recorder(store)
    params = params_of(engine.sampling, engine.repeat_guard)
    conversation.add_user("Tell me a story.")
    recorder.user(conversation, params)
    assert recorder.conversation_id is not None
    assert [m.role for m in store.messages(recorder.conversation_id)] == ["user"]
    done = engine.reply(conversation)
    question = store.messages(recorder.conversation_id)[0]
    engine.sampling = engine.sampling.model_copy(update={"temperature": 0.7})  # after the fact
    recorder.reply(
        done, model="runaway.gguf", model_sha256="cd" * 32, reply_to=question.id, system="Be brief."
    )
    _user, reply = store.messages(recorder.conversation_id)
    assert reply.reply_to == question.id and reply.system == "Be brief."
    assert reply.sampling["repeat_guard"] == engine.repeat_guard.model_dump()
    assert reply.text == done.text and reply.stop_reason == "end_of_turn" and not reply.partial
    assert reply.prompt_tokens == done.stats.prompt_tokens
    assert reply.completion_tokens == done.stats.completion_tokens > 0
    assert reply.sampling["seed"] == done.stats.seed  # the seed drawn, not None
    assert reply.sampling["temperature"] == 0.0  # what it was generated with
    assert reply.token_ids == done.token_ids and reply.model == "runaway.gguf"
    record = store.get(recorder.conversation_id)
    assert record.system == "Be brief." and record.title == "Tell me a story."
    assert record.params["sampling"]["max_tokens"] == engine.sampling.max_tokens
    recorder.delete([reply.id])
    assert len(store.messages(recorder.conversation_id)) == 1


def test_restore_params_ignores_unknown_and_invalid_values(store: HistoryStore) -> None:
    cid = store.create(
        params={
            "sampling": {"temperature": 0.3, "top_k": -5, "no_such": 1},
            "repeat_guard": {"enabled": False},
        }
    )
    sampling, guard = restore_params(store.get(cid), Sampling(), RepeatGuard())
    assert sampling == Sampling()  # top_k -5 is invalid: the whole block is not applied
    assert guard.enabled is False
    cid = store.create(params={"sampling": {"temperature": 0.3, "no_such": 1}})
    sampling, _ = restore_params(store.get(cid), Sampling(), RepeatGuard())
    assert sampling.temperature == 0.3


# ------------------------------------------------------------------ export/import


def test_json_export_round_trips_losslessly(store: HistoryStore, tmp_path: Path) -> None:
    cid = store.create(system="sys", params={"sampling": {"seed": 7}})
    store.add(cid, MessageRecord("user", "Q: 🦙?"))
    store.add(
        cid,
        MessageRecord(
            "model",
            "A.",
            stop_reason="repetition",
            partial=True,
            token_ids=(1, 2),
            ttft_s=0.125,
            sampling={"seed": 9},
        ),
    )
    store.rename(cid, "Llamas")
    exported = transfer.export_json(store, cid)
    with HistoryStore(tmp_path / "other.db") as other:
        new_id = transfer.import_json(other, exported)
        assert new_id == cid
        assert transfer.export_json(other, new_id) == exported
        with pytest.raises(UsageError, match="already in the history"):
            transfer.import_json(other, exported)
    store.delete(cid)
    store.create()  # takes the old id: the import gets a new one, same content
    new_id = transfer.import_json(store, exported)
    assert new_id != cid
    again = json.loads(transfer.export_json(store, new_id))
    original = json.loads(exported)
    original["conversation"]["id"] = new_id
    assert again == original


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a gemma-chat conversation export"),
        ('{"format": "other"}', "format"),
    ],
)
def test_import_rejects_what_is_not_an_export(
    store: HistoryStore, text: str, expected: str
) -> None:
    with pytest.raises(UsageError, match=expected):
        transfer.import_json(store, text, "x.json")


def test_import_names_the_bad_field(store: HistoryStore) -> None:
    cid = store.create()
    store.add(cid, MessageRecord("user", "hi"))
    data = json.loads(transfer.export_json(store, cid))
    data["messages"][0]["role"] = "system"
    data["conversation"]["uuid"] = "another"
    with pytest.raises(UsageError, match=r"messages\.0\.role"):
        transfer.import_json(store, json.dumps(data), "x.json")


def test_markdown_export_is_a_readable_transcript(store: HistoryStore) -> None:
    cid = store.create(system="Answer in French.\nBriefly.")
    store.add(cid, MessageRecord("user", "Hello"))
    store.add(
        cid,
        MessageRecord("model", "Bonjour", stop_reason="cancelled", partial=True, model="m.gguf"),
    )
    text = transfer.export_markdown(store, cid)
    assert text.startswith("# Hello\n")
    assert "> Answer in French.\n> Briefly." in text
    assert "## You\n\nHello\n\n## Gemma (m.gguf)\n\nBonjour\n\n*(reply stopped: cancelled)*" in text


# -------------------------------------------------------- interleaved writers, ids


def test_interleaved_exchanges_are_paired_by_the_question_they_answer(
    store: HistoryStore,
) -> None:
    cid = store.create()
    first = store.add(cid, MessageRecord("user", "q1"))
    store.add(cid, MessageRecord("model", "a1", reply_to=first.id, stop_reason="end_of_turn"))
    # two processes continue at once: both questions land before either reply
    qa = store.add(cid, MessageRecord("user", "qA"))
    qb = store.add(cid, MessageRecord("user", "qB"))
    store.add(cid, MessageRecord("model", "aB", reply_to=qb.id, stop_reason="end_of_turn"))
    store.add(cid, MessageRecord("model", "aA", reply_to=qa.id, stop_reason="end_of_turn"))
    turns = stored_turns(store.messages(cid))
    assert [(t.role.value, t.text) for t in turns] == [
        ("user", "q1"),
        ("model", "a1"),
        ("user", "qA"),
        ("model", "aA"),
        ("user", "qB"),
        ("model", "aB"),
    ]
    conversation = to_conversation(store.get(cid), store.messages(cid), None)
    assert [t.text for t in conversation.turns] == [t.text for t in turns]


def test_unanswered_questions_join_the_next_and_strays_are_left_out(store: HistoryStore) -> None:
    cid = store.create()
    store.add(cid, MessageRecord("model", "a reply to nothing"))
    q1 = store.add(cid, MessageRecord("user", "lost"))
    q2 = store.add(cid, MessageRecord("user", "again"))
    store.add(cid, MessageRecord("model", "answer", reply_to=q2.id))
    store.add(cid, MessageRecord("model", "second answer", reply_to=q2.id))
    turns = stored_turns(store.messages(cid))
    assert [(t.role.value, t.text, t.ids) for t in turns] == [
        ("user", "lost\n\nagain", [q1.id, q2.id]),
        ("model", "answer", [q2.id + 1]),
    ]


def test_an_unknown_stop_reason_reads_as_end_of_turn(store: HistoryStore) -> None:
    cid = store.create()
    q = store.add(cid, MessageRecord("user", "hi"))
    store.add(cid, MessageRecord("model", "yo", stop_reason="from_the_future", reply_to=q.id))
    conversation = to_conversation(store.get(cid), store.messages(cid), None)
    assert conversation.turns[1].stop_reason is StopReason.END_OF_TURN


def test_delete_if_empty_and_deleting_a_message_with_what_follows_it(
    store: HistoryStore,
) -> None:
    cid = store.create()
    q = store.add(cid, MessageRecord("user", "q"))
    old = store.add(cid, MessageRecord("model", "old", reply_to=q.id, parent_id=q.id))
    new = store.add(cid, MessageRecord("model", "new", reply_to=q.id, parent_id=q.id))
    assert [m.text for m in store.messages(cid)] == ["q", "new"] and new.seq == 2
    assert store.delete_if_empty(cid) is False  # it has messages
    assert store.delete_messages(cid, [new.id]) == 1
    assert [m.text for m in store.messages(cid)] == ["q"]  # the branch ends at its parent
    store.view(cid, old.id)
    assert [m.text for m in store.messages(cid)] == ["q", "old"]
    assert store.delete_messages(cid, [q.id]) == 2  # a question goes with its replies
    assert store.delete_if_empty(cid) is True
    with pytest.raises(NotFound):
        store.get(cid)


def test_conversation_ids_are_never_reused(store: HistoryStore) -> None:
    a, b = store.create(), store.create()
    store.delete(b)
    c = store.create()
    assert c == b + 1 and a == b - 1


def test_renaming_is_not_activity(store: HistoryStore) -> None:
    old, recent = store.create(), store.create()
    store.add(old, MessageRecord("user", "first"))
    store.add(recent, MessageRecord("user", "second"))
    store.rename(old, "Renamed")
    store.set_settings(old, "sys", {})
    assert store.latest().id == recent  # type: ignore[union-attr]


def test_a_closed_store_is_an_error_but_not_corrupt(store: HistoryStore) -> None:
    cid = store.create()
    store.close()
    with pytest.raises(StoreError) as caught:
        store.add(cid, MessageRecord("user", "late"))
    assert not isinstance(caught.value, CorruptStore)
    assert "move-aside" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["messages"][0].update(ttft_s=float("nan")), "messages.0.ttft_s"),
        (lambda d: d["messages"][0].update(token_ids=[2**40]), "messages.0.token_ids.0"),
        (lambda d: d["messages"][0].update(prompt_tokens=2**70), "messages.0.prompt_tokens"),
        (lambda d: d["conversation"].update(id=2**70), "conversation.id"),
        (lambda d: d["messages"][0].update(stop_reason="weird"), "messages.0.stop_reason"),
    ],
)
def test_import_rejects_out_of_range_values(store: HistoryStore, change, where: str) -> None:
    cid = store.create()
    store.add(cid, MessageRecord("user", "hi"))
    data = json.loads(transfer.export_json(store, cid))
    data["conversation"]["uuid"] = "another"
    change(data)
    with pytest.raises(UsageError, match=where.replace(".", r"\.")):
        transfer.import_json(store, json.dumps(data), "x.json")


# ------------------------------------------------------- durability and positions


def test_every_connection_runs_with_wal_and_synchronous_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    schema.migrate(conn, target=1)  # a first-version file: opening it migrates
    conn.close()
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def spy(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", spy)
    new = tmp_path / "new.db"
    stores = [HistoryStore(new), HistoryStore(new), HistoryStore(old), HistoryStore()]
    try:
        first, second = stores[0], stores[1]
        cid = first.create()
        second.add(cid, MessageRecord("user", "durable words"))
        assert first.search("durable")
        transfer.import_json(stores[2], transfer.export_json(first, cid))
        second.delete(cid)
        assert len(opened) >= len(stores)
        for connection in opened:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        for opened_store in stores:
            opened_store.close()


def test_next_position_is_after_the_last_one_with_another_writer_deleting(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.db"
    with HistoryStore(db) as one, HistoryStore(db) as other:
        cid = one.create()
        # Each starts a branch of its own: deleting one deletes no other.
        first = [one.add(cid, MessageRecord("user", f"one {n}", parent_id=None)) for n in range(3)]
        assert [m.seq for m in first] == [0, 1, 2]
        # The other writer deletes the first message: 2 are left, but position 2 is
        # taken, so the next one is max + 1, never the count.
        other.delete_messages(cid, [first[0].id])
        root = MessageRecord("user", "", parent_id=None)
        assert other.add(cid, replace(root, text="other 0")).seq == 3
        assert one.add(cid, replace(root, text="one 3")).seq == 4
        # Deleting from the middle too, then both write again.
        one.delete_messages(cid, [first[1].id])
        assert other.add(cid, replace(root, text="other 1")).seq == 5
        newest = one.add(cid, replace(root, text="one 4"))
        assert newest.seq == 6
        # The newest is deleted: its position is free again, nothing after it.
        other.delete_messages(cid, [newest.id])
        assert one.add(cid, replace(root, text="one 5")).seq == 6
        texts = [m.text for m in other.all_messages(cid)]
        assert texts == ["one 2", "other 0", "one 3", "other 1", "one 5"]


# ------------------------------------------------------------- ids and contract


def test_an_absurd_imported_id_gets_a_new_one_and_saving_keeps_working(
    store: HistoryStore,
) -> None:
    cid = store.create()
    store.add(cid, MessageRecord("user", "hi"))
    data = json.loads(transfer.export_json(store, cid))
    for n, absurd in enumerate([2**63 - 1, 2**53, KEEP_ID_LIMIT + 1]):
        data["conversation"].update(id=absurd, uuid=f"absurd-{n}")
        new_id = transfer.import_json(store, json.dumps(data))
        assert new_id == cid + 1 + 2 * n  # from the counter, not the file
        store.delete(new_id)
        saved = store.create()  # the next save still works
        assert saved == new_id + 1
        store.delete(saved)
    # An id that is free and in range is kept; the counter continues after it.
    data["conversation"].update(id=KEEP_ID_LIMIT, uuid="kept")
    assert transfer.import_json(store, json.dumps(data)) == KEEP_ID_LIMIT
    assert store.create() == KEEP_ID_LIMIT + 1


def test_a_counter_pushed_to_the_edge_by_an_older_version_is_repaired(
    store: HistoryStore,
) -> None:
    kept = store.create()
    # What importing id 2**63 - 1 and deleting it did before ids were bounded.
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("UPDATE counters SET value = ? WHERE name = 'conversation'", (2**63 - 1,))
    conn.close()
    assert store.create() == kept + 1
    assert store.create() == kept + 2


def test_store_operations_raise_only_the_stores_own_errors(store: HistoryStore) -> None:
    cid = store.create()
    with pytest.raises(Unstorable, match="not valid Unicode") as caught:
        store.add(cid, MessageRecord("user", "bad \ud800 text"))
    assert caught.value.exit_code == 2 and isinstance(caught.value, StoreError)
    with pytest.raises(Unstorable, match="out of the history database's range"):
        store.get(2**64)
    with pytest.raises(Unstorable):
        store.add(cid, MessageRecord("model", "x", prompt_tokens=2**70))
    with pytest.raises(Unstorable):
        store.rename(2**63, "far")
    # Nothing was half-written, and the store goes on working.
    assert store.messages(cid) == []
    assert store.add(cid, MessageRecord("user", "fine")).seq == 0
    # A limit past SQLite's range means no limit, not an error.
    assert [r.id for r in store.conversations(limit=10**20)] == [cid]
    assert len(store.search("fine", limit=10**20)) == 1


def test_search_snippets_are_bounded(store: HistoryStore) -> None:
    cid = store.create()
    word = "x" * 2_000_000
    store.add(cid, MessageRecord("user", f"needle {word} " + "padding " * 10_000))
    store.add(cid, MessageRecord("user", word))
    hits = store.search("needle")
    assert len(hits) == 1
    assert len(hits[0].snippet) <= SNIPPET_LENGTH + 2
    assert hits[0].highlighted("[", "]").startswith("[needle] xxx")
    hits = store.search("xxxx")
    assert len(hits) == 2
    for hit in hits:
        assert len(hit.snippet) <= SNIPPET_LENGTH + 2
        assert hit.snippet.count(SNIPPET_OPEN) == hit.snippet.count(SNIPPET_CLOSE) >= 1


@pytest.mark.parametrize(
    ("links", "problem"),
    [
        ([1, 0], "messages.1.replaced_by: 0 is not the position of a later message"),
        ([0, None], "messages.0.replaced_by: 0 is not the position of a later message"),
        ([5, None], "messages.0.replaced_by: 5 is not the position of a later message"),
    ],
)
def test_an_import_whose_replaced_by_loops_back_or_points_nowhere_is_refused(
    store: HistoryStore, links: list[int | None], problem: str
) -> None:
    """A cycle or a backward link would hide messages for good (review of schema 4)."""
    messages = [
        {"role": role, "text": role, "created_at": "t", "replaced_by": link}
        for role, link in zip(("user", "model"), links, strict=True)
    ]
    document = {
        "format": "gemma-chat-conversation",
        "version": 2,
        "conversation": {"uuid": "u", "title": "t", "created_at": "t", "updated_at": "t"},
        "messages": messages,
    }
    with pytest.raises(UsageError, match=re.escape(problem)):
        transfer.import_json(store, json.dumps(document))


def test_an_import_with_a_meta_nested_too_deep_is_refused(store: HistoryStore) -> None:
    meta: dict = {}
    for _ in range(40):
        meta = {"a": meta}
    document = {
        "format": "gemma-chat-conversation",
        "version": 2,
        "conversation": {"uuid": "deep", "title": "t", "created_at": "t", "updated_at": "t"},
        "messages": [{"role": "user", "text": "x", "created_at": "t", "meta": meta}],
    }
    with pytest.raises(UsageError, match=r"messages\.0\.meta: .*nested more than 16 deep"):
        transfer.import_json(store, json.dumps(document))
