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
