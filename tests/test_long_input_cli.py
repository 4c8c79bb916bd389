"""``ask -f`` over an input three times the context, end to end on the real demo model
(a 512-token context keeps it short), and Ctrl+C during the map."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from gemma_chat.history.store import HistoryStore

pytestmark = pytest.mark.slow

QUESTION = "Which crate holds the most pears?"


def write_input(path: Path, paragraphs: int = 55) -> Path:
    """About 1,650 demo-model tokens: three times a 512-token context."""
    text = "\n\n".join(
        f"Crate {i} holds {i * 3 % 17} pears.\nIt was packed on day {i}.\n"
        f"The label says lot {1000 + i}."
        for i in range(paragraphs)
    )
    path.write_text(text + "\n")
    return path


# One thread: on a busy machine two threads contend far more than they gain.
ARGS = ("--ctx", "512", "-n", "8", "--temp", "0", "--seed", "1", "--no-repeat-guard", "-t", "1")


def test_ask_answers_part_by_part_on_the_demo_model(demo_path, tmp_path) -> None:
    crates = write_input(tmp_path / "crates.txt")
    proc = run_cli("ask", "-m", "demo", *ARGS, "-f", str(crates), QUESTION, "--json", timeout=280)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.decode().splitlines()  # one line: the plan
    assert "is larger than the context (512 tokens): answering it in" in line
    result = json.loads(proc.stdout)
    long_input = result["long_input"]
    steps = long_input["steps"]
    assert long_input["input_tokens"] >= 3 * 512
    assert long_input["chunks"] >= 3 and long_input["calls"] == len(steps)
    assert [s["kind"] for s in steps[: long_input["chunks"]]] == ["map"] * long_input["chunks"]
    assert steps[0]["title"] == f"part 1 of {long_input['chunks']} of {crates}"
    assert steps[-1]["title"] == "the answer" and steps[-1]["text"] == result["text"]
    assert all(s["prompt_tokens"] <= 512 - 8 and s["completion_tokens"] <= 8 for s in steps)
    assert all(s["stop_reason"] in ("end_of_turn", "max_tokens") for s in steps)
    assert long_input["evaluated_tokens"] == sum(s["evaluated_tokens"] for s in steps)
    assert result["conversation_id"] is not None
    with HistoryStore() as store:
        user, reply = store.messages(result["conversation_id"])
    assert (result["question_id"], result["reply_id"]) == (user.id, reply.id)
    assert user.text.startswith(f"{crates}\n```\nCrate 0 holds 0 pears.")
    assert user.text.endswith(QUESTION) and reply.text == result["text"]
    assert user.meta["attachments"][0]["name"] == str(crates)
    assert reply.meta["map_reduce"]["steps"] == steps  # every note kept with the answer
    cid = str(result["conversation_id"])
    brief = run_cli("history", "show", cid).stdout.decode()
    assert f"Answered part by part: {long_input['chunks']} parts" in brief
    assert "part 1 of" not in brief  # the notes only with --verbose
    verbose = run_cli("history", "show", cid, "--verbose").stdout.decode()
    assert f"**map: part 1 of {long_input['chunks']} of {crates}**" in verbose
    assert "**reduce: the answer**" in verbose
    # --long refuse: the old refusal, before the model loads.
    refused = run_cli("ask", "-m", "demo", *ARGS, "--long", "refuse", "-f", str(crates), "q")
    assert refused.returncode == 1 and b"too long" in refused.stderr


def test_ctrl_c_during_the_map_stops_everything_and_keeps_the_notes(demo_path, tmp_path) -> None:
    crates = write_input(tmp_path / "crates.txt", paragraphs=200)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemma_chat",
            "ask",
            "-m",
            "demo",
            *ARGS,
            "-f",
            str(crates),
            QUESTION,
            "--json",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stderr is not None
    plan = proc.stderr.readline().decode()  # printed just before the first call
    assert "answering it in" in plan, plan
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    result = json.loads(out)
    steps = result["long_input"]["steps"]
    assert result["stop_reason"] == "cancelled" and result["text"] == ""
    assert steps[-1]["stop_reason"] == "cancelled" and steps[-1]["kind"] == "map"
    assert len(steps) < result["long_input"]["chunks"]  # nothing ran after the cancel
    with HistoryStore() as store:
        _, reply = store.messages(result["conversation_id"])
    assert reply.partial and reply.stop_reason == "cancelled"
