"""Crash safety of a real ``gemma-chat ask`` process: ``kill -9`` in the middle of a
reply loses at most that reply, and the conversation carries on afterwards."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemma_chat.history.store import HistoryStore, MessageRecord, store_file
from gemma_chat.history.turns import stored_turns

pytestmark = pytest.mark.slow


def test_kill_9_mid_reply_loses_only_that_reply(demo_path: Path) -> None:
    with HistoryStore() as store:
        cid = store.create(system="Be brief.")
        store.add(cid, MessageRecord("user", "First question"))
        store.add(cid, MessageRecord("model", "First answer.", stop_reason="end_of_turn"))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemma_chat",
            "ask",
            "-c",
            "--model",
            str(demo_path),
            "-n",
            "2000",
            "--no-repeat-guard",
            "--temperature",
            "1",
            "--seed",
            "3",
            "Write a very long story about a lighthouse keeper.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    assert child.stdout is not None
    streamed = b""
    deadline = time.monotonic() + 120
    while len(streamed) < 40:  # the reply is streaming
        assert time.monotonic() < deadline, "no reply streamed"
        chunk = os.read(child.stdout.fileno(), 4096)
        assert chunk, child.stderr.read() if child.stderr else "no output"
        streamed += chunk
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    db = store_file()
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with HistoryStore() as store:
        messages = store.messages(cid)
        # Everything before the crash is there, and the question was saved before the
        # reply started; only the reply being generated is gone.
        assert [(m.role, m.text) for m in messages] == [
            ("user", "First question"),
            ("model", "First answer."),
            ("user", "Write a very long story about a lighthouse keeper."),
        ]
    # The conversation goes on: the unanswered question is answered with the next one.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gemma_chat",
            "ask",
            "-c",
            "--model",
            str(demo_path),
            "-n",
            "8",
            "--temperature",
            "0",
            "Shorter, please.",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with HistoryStore() as store:
        messages = store.messages(cid)
        assert [m.role for m in messages] == ["user", "model", "user", "user", "model"]
        assert messages[-1].text and messages[-1].stop_reason


def _ask_args(demo_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gemma_chat", "ask", "--model", str(demo_path), *args]


def test_a_closed_pipe_keeps_the_reply_as_partial(demo_path: Path) -> None:
    reader = subprocess.Popen(
        _ask_args(demo_path, "-n", "400", "--no-repeat-guard", "--seed", "5", "Tell a story."),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert reader.stdout is not None
    head = reader.stdout.read(20)  # `| head -c 20`
    reader.stdout.close()
    _, err = reader.communicate(timeout=120)
    assert len(head) == 20
    assert b"Traceback" not in err
    with HistoryStore() as store:
        (record,) = store.conversations()
        question, reply = store.messages(record.id)
        assert question.text == "Tell a story."
        assert reply.partial and reply.stop_reason == "cancelled"
        assert reply.text.encode().startswith(head) and reply.reply_to == question.id


def test_two_asks_continuing_one_conversation_at_once_keep_their_own_branches(
    demo_path: Path,
) -> None:
    with HistoryStore() as store:
        cid = store.create()
        first = store.add(cid, MessageRecord("user", "Hello"))
        store.add(cid, MessageRecord("model", "Hi.", reply_to=first.id))
    runs = [
        subprocess.Popen(
            _ask_args(demo_path, "--conversation", str(cid), "-n", "24", "--seed", str(n), text),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        for n, text in enumerate(["Question A", "Question B"])
    ]
    answers = {}
    for run, text in zip(runs, ["Question A", "Question B"], strict=True):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        answers[text] = out.decode().strip()
    with HistoryStore() as store:
        messages = store.all_messages(cid)
        assert len(messages) == 6
        # Each run continued the branch it read: its question after "Hi." (or after the
        # other run's reply, had that been written first), its reply after its question.
        for text, answer in answers.items():
            question = next(m for m in messages if m.text == text)
            reply = next(m for m in messages if m.parent_id == question.id)
            assert reply.role == "model" and reply.text.strip() == answer
            branch = store.messages(cid, leaf=reply.id)
            turns = stored_turns(branch)
            assert [t.role.value for t in turns][:2] == ["user", "model"]
            assert [m.text for m in branch][:2] == ["Hello", "Hi."]


def test_deleting_a_conversation_deletes_its_saved_state(demo_path: Path) -> None:
    Path(os.environ["GEMMA_CHAT_CONFIG"]).write_text("[state_cache]\nmin_tokens = 4\n")
    done = subprocess.run(
        _ask_args(demo_path, "-n", "8", "--json", "Name a colour."),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with HistoryStore() as store:
        uuid = store.get(1).uuid
    kv = Path(os.environ["GEMMA_CHAT_CACHE_DIR"]) / "kv"
    assert (kv / f"{uuid}.kv").exists()
    deleted = subprocess.run(
        [sys.executable, "-m", "gemma_chat", "history", "delete", "1", "--yes"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert deleted.returncode == 0, deleted.stderr
    assert not (kv / f"{uuid}.kv").exists() and not (kv / f"{uuid}.json").exists()
