"""``ask --conversation ID --from MSG``: continue from any message, on a new branch.

End to end on the real demo model in a subprocess, greedy, on a real SQLite file: the
prompt is the branch from the start to MSG, then the new question (the same prompt a
plain continuation from there had, so the same greedy reply), and the stored parents
make the new question a sibling of what followed MSG before. A question given as MSG
takes the new text into its own turn. Mistakes are one line and exit 2, before any load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli

from gemma_chat import cli
from gemma_chat.cli.exchange import open_exchange
from gemma_chat.cli.options import HistoryOptions
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.history.store import HistoryStore, MessageRecord

GREEDY = ("-n", "6", "--temperature", "0", "--seed", "1", "--json")


def ask(demo_path: Path, *args: str) -> dict:
    proc = run_cli("ask", "--model", str(demo_path), *GREEDY, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def stored(cid: int) -> list[tuple[int, str, str, int | None]]:
    """(id, role, text, parent_id) of every message, in the order written."""
    with HistoryStore() as store:
        return [(m.id, m.role, m.text, m.parent_id) for m in store.all_messages(cid)]


@pytest.mark.slow
def test_from_a_reply_branches_with_that_branch_as_the_prompt(demo_path: Path) -> None:
    first = ask(demo_path, "Name a colour.")
    cid = first["conversation_id"]
    second = ask(demo_path, "-c", "Name a fruit.")  # the branch viewed: Q1 A1 Q2 A2
    (q1, _, _, _), (a1, _, _, _) = stored(cid)[:2]
    assert (first["question_id"], first["reply_id"]) == (q1, a1)  # what --from takes

    again = ask(demo_path, "--conversation", str(cid), "--from", str(a1), "Name a fruit.")
    assert again["conversation_id"] == cid
    # The prompt was Q1 A1 and the question, as for the second ask: not Q1 A1 Q2 A2 too.
    assert again["prompt_tokens"] == second["prompt_tokens"]
    assert again["text"] == second["text"]  # greedy, the same prompt: the same reply

    messages = stored(cid)
    assert len(messages) == 6  # nothing was replaced or deleted
    (new_q, role_q, text_q, parent_q), (new_a, role_a, _, parent_a) = messages[-2:]
    assert (role_q, text_q, parent_q) == ("user", "Name a fruit.", a1)
    assert (role_a, parent_a) == ("model", new_q)
    assert (again["question_id"], again["reply_id"]) == (new_q, new_a)
    with HistoryStore() as store:
        # A sibling of the question that followed A1 before; its branch is the one viewed
        # (what a plain -c continues).
        assert [m.id for m in store.siblings(cid, new_q)] == [messages[2][0], new_q]
        assert [m.id for m in store.messages(cid)] == [q1, a1, new_q, new_a]
        assert store.messages(cid)[-1].reply_to == new_q
    # --no-save reads the branch the same way, and stores nothing.
    unsaved = ask(
        demo_path, "--no-save", "--conversation", str(cid), "--from", str(a1), "Name a fruit."
    )
    assert unsaved["conversation_id"] is None and unsaved["text"] == second["text"]
    assert unsaved["question_id"] is None and unsaved["reply_id"] is None
    assert len(stored(cid)) == 6


@pytest.mark.slow
def test_from_a_question_joins_it(demo_path: Path) -> None:
    first = ask(demo_path, "Name a colour.")
    cid = first["conversation_id"]
    q1 = stored(cid)[0][0]
    joined = ask(demo_path, "--conversation", str(cid), "--from", str(q1), "Only one word.")
    # One user turn holding both texts, as an unanswered question is joined today.
    alone = ask(demo_path, "--no-save", "Name a colour.\n\nOnly one word.")
    assert joined["prompt_tokens"] == alone["prompt_tokens"]
    assert joined["text"] == alone["text"]
    messages = stored(cid)
    assert len(messages) == 4
    (new_q, role_q, text_q, parent_q), (new_a, role_a, _, parent_a) = messages[2:]
    assert (role_q, text_q, parent_q) == ("user", "Only one word.", q1)
    assert (role_a, parent_a) == ("model", new_q)
    with HistoryStore() as store:
        assert [m.id for m in store.messages(cid)] == [q1, new_q, new_a]


@pytest.mark.slow
def test_from_reuses_the_saved_state_for_the_shared_part(demo_path: Path) -> None:
    """The KV state saved after the last reply holds Q1 A1 Q2 A2; a branch from A1
    evaluates only what follows Q1 A1, and then saves its own state for a later -c."""
    Path(os.environ["GEMMA_CHAT_CONFIG"]).write_text("[state_cache]\nmin_tokens = 16\n")
    first = ask(demo_path, "-n", "24", "--system", "Answer briefly.", "Name three rivers.")
    cid = first["conversation_id"]
    ask(demo_path, "-c", "And three mountains?")
    a1 = stored(cid)[1][0]
    branch = ask(demo_path, "--conversation", str(cid), "--from", str(a1), "And three lakes?")
    shared = first["prompt_tokens"] + first["completion_tokens"]
    assert 0 < branch["evaluated_tokens"] < branch["prompt_tokens"] - shared + 8
    later = ask(demo_path, "-c", "And three seas?")  # the state saved is the new branch's
    assert later["evaluated_tokens"] < later["prompt_tokens"] - branch["prompt_tokens"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--from", "{q}"], "--from needs the conversation the message is in"),
        (["--no-save", "--from", "{q}"], "--from needs the conversation the message is in"),
        (["--conversation", "{cid}", "--from", "{other}"], "there is no message {other} in"),
        (["--conversation", "{cid}", "--from", "999"], "there is no message 999 in conversation"),
        (["-c", "--from", "999"], "there is no message 999 in conversation"),
        (["--conversation", "{cid}", "--from", "two"], "Invalid value for '--from'"),
        (["--conversation", "{cid}", "--from", "0"], "0 is not a message id"),
        (["--conversation", "{cid}", "--from", str(2**63)], "is not a message id"),
    ],
    ids=[
        "no-conversation",
        "no-save",
        "other-conversation",
        "unknown",
        "continue",
        "word",
        "zero",
        "huge",
    ],
)
def test_mistakes_are_one_line_exit_2_and_store_nothing(capsys, monkeypatch, args, text) -> None:
    monkeypatch.setattr("gemma_chat.cli.inputs.stdin_is_piped", lambda stream=None: False)
    with HistoryStore() as store:
        cid = store.create(origin="ask")
        q = store.add(cid, MessageRecord("user", "Hello")).id
        other = store.create()
        other_q = store.add(other, MessageRecord("user", "Elsewhere")).id
    values = {"cid": cid, "q": q, "other": other_q}
    argv = ["ask", "--model", "/nonexistent.gguf", *(a.format(**values) for a in args), "hi"]
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert text.format(**values) in err and "Traceback" not in err and out == ""
    assert len(stored(cid)) == 1 and len(stored(other)) == 1


def test_a_question_taken_back_leaves_the_branch_viewed_as_it_was() -> None:
    """A --from question that cannot be answered (it does not fit, the server fails) is
    taken back, and the branch viewed before is viewed again: a later -c continues it,
    not the message the failed branch started from."""
    with HistoryStore() as store:
        cid = store.create(origin="ask")
        q1 = store.add(cid, MessageRecord("user", "Q1")).id
        a1 = store.add(cid, MessageRecord("model", "A1", parent_id=q1, reply_to=q1)).id
        q2 = store.add(cid, MessageRecord("user", "Q2")).id
        a2 = store.add(cid, MessageRecord("model", "A2", parent_id=q2, reply_to=q2)).id
    info = SimpleNamespace(sha256=None, display_name="m.gguf")
    for start in (a1, q1):  # after a reply; joined to a question
        exchange = open_exchange(
            build_settings(), HistoryOptions(conversation=cid, from_message=start)
        )
        try:
            conversation = exchange.conversation(info, "From there")
            assert conversation.turns[-1].text in ("From there", "Q1\n\nFrom there")
            with HistoryStore() as store:
                assert store.messages(cid)[-1].parent_id == start
            exchange.unsend()
        finally:
            exchange.close()
        with HistoryStore() as store:
            assert [m.id for m in store.messages(cid)] == [q1, a1, q2, a2]
            assert len(store.all_messages(cid)) == 4
