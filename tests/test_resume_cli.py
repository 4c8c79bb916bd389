"""``ask --continue`` resumes from the saved KV state: only the new message is evaluated,
and the reply is the same as after evaluating the whole history again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from gemma_chat.history.store import HistoryStore

pytestmark = pytest.mark.slow


def _ask(demo_path: Path, *args: str) -> dict:
    proc = run_cli("ask", "--model", str(demo_path), "--json", "--temperature", "0", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def _config(tmp_path: Path, enabled: bool) -> None:
    Path(os.environ["GEMMA_CHAT_CONFIG"]).write_text(
        f"[state_cache]\nenabled = {str(enabled).lower()}\nmin_tokens = 16\n"
    )


def test_continue_evaluates_only_the_new_message(demo_path: Path, tmp_path: Path) -> None:
    _config(tmp_path, enabled=True)
    first = _ask(demo_path, "-n", "24", "--system", "Answer briefly.", "Name three rivers.")
    with HistoryStore() as store:
        uuid = store.get(first["conversation_id"]).uuid
    kv = Path(os.environ["GEMMA_CHAT_CACHE_DIR"]) / "kv"
    assert (kv / f"{uuid}.kv").exists() and (kv / f"{uuid}.json").exists()

    cached = _ask(demo_path, "-c", "-n", "12", "And three mountains?")
    assert cached["conversation_id"] == first["conversation_id"]
    history = first["prompt_tokens"] + first["completion_tokens"]
    # The restored state covers the whole first exchange; only the new turn is evaluated.
    assert cached["evaluated_tokens"] < cached["prompt_tokens"] - history + 8

    # Without the cache, the same continuation evaluates everything, and says the same.
    _config(tmp_path, enabled=False)
    with HistoryStore() as store:
        later = [m.id for m in store.messages(first["conversation_id"])[2:]]
        store.delete_messages(first["conversation_id"], later)
    uncached = _ask(demo_path, "-c", "-n", "12", "And three mountains?")
    assert uncached["evaluated_tokens"] == uncached["prompt_tokens"]
    assert uncached["prompt_tokens"] == cached["prompt_tokens"]
    assert uncached["text"] == cached["text"]
