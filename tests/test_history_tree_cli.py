"""The conversation tree in the CLI: ``history show ID --tree`` (text, piped and on a
terminal, and ``--json``), and the Markdown transcript of the branch viewed or, with
``--all-branches``, of every branch. On a real SQLite store in the per-test data dir;
the terminal cases run the CLI on a real pty."""

from __future__ import annotations

import json
import re

import pytest
from escapes import CORPUS, leaked
from test_terminal_escapes import run_in_pty

from gemma_chat import cli
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.history.transfer import export_markdown


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # piped output is this wide


def three_branches() -> tuple[int, dict[str, int]]:
    """Q1 with two replies (A1, A1b); after A1, Q2 and an edit of it, Q2b; each answered.
    The branch viewed is the last written: Q1 A1b."""
    with HistoryStore() as store:
        cid = store.create(title="tree")
        ids: dict[str, int] = {}
        for name, parent in [
            ("Q1", None),
            ("A1", "Q1"),
            ("Q2", "A1"),
            ("A2", "Q2"),
            ("Q2b", "A1"),
            ("A2b", "Q2b"),
            ("A1b", "Q1"),
        ]:
            role = "user" if name.startswith("Q") else "model"
            parent_id = None if parent is None else ids[parent]
            record = MessageRecord(role, f"{name} text", parent_id=parent_id)
            ids[name] = store.add(cid, record).id
    return cid, ids


def test_tree_lines(capsys) -> None:
    cid, _ = three_branches()
    code, out, err = run(capsys, "history", "show", str(cid), "--tree")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"Conversation {cid}: tree · 3 branches · * the branch viewed",
        "* 1  you    Q1 text",
        "  2  gemma  ├─ 1/2 A1 text",
        "  3  you    │  ├─ 1/2 Q2 text",
        "  4  gemma  │  │  A2 text",
        "  5  you    │  2/2 Q2b text",
        "  6  gemma  │  A2b text",
        "* 7  gemma  2/2 A1b text",
    ]
    # Viewing another branch moves the marks, and that branch becomes the main line.
    with HistoryStore() as store:
        store.view(cid, 4)
    out = run(capsys, "history", "show", str(cid), "--tree")[1]
    assert out.splitlines()[1:] == [
        "* 1  you    Q1 text",
        "  7  gemma  ├─ 2/2 A1b text",
        "* 2  gemma  1/2 A1 text",
        "  5  you    ├─ 2/2 Q2b text",
        "  6  gemma  │  A2b text",
        "* 3  you    1/2 Q2 text",
        "* 4  gemma  A2 text",
    ]


def add_chain(store: HistoryStore, cid: int, parent: int | None, count: int, text: str) -> int:
    for n in range(count):
        role = "user" if n % 2 == 0 else "model"
        parent = store.add(cid, MessageRecord(role, f"{text} {n} " * 20, parent_id=parent)).id
    assert parent is not None
    return parent


def test_a_long_conversation_stays_flat_and_within_80_columns(capsys) -> None:
    """200 messages with 20 regenerated replies on the way: the branch viewed is one flat
    column; side branches nested twelve deep stay within the width, with their depth."""
    with HistoryStore() as store:
        cid = store.create(title="long " * 40)
        tail = None
        for exchange in range(100):
            question = store.add(cid, MessageRecord("user", f"q{exchange} " * 30, parent_id=tail))
            if exchange % 5 == 0:  # an older reply, regenerated: a side branch
                store.add(cid, MessageRecord("model", "old " * 30, parent_id=question.id))
            tail = store.add(cid, MessageRecord("model", "new " * 30, parent_id=question.id)).id
        side = store.all_messages(cid)[1].id  # the first side branch forks twelve times
        for _ in range(12):
            older = add_chain(store, cid, side, 2, "older")  # a side branch of the newer
            add_chain(store, cid, side, 2, "newer")
            side = older
        store.view(cid, tail)
        total = len(store.all_messages(cid))
    lines = run(capsys, "history", "show", str(cid), "--tree")[1].splitlines()
    assert len(lines) == total + 1 and max(map(len, lines)) <= 80
    main = [line for line in lines[1:] if line.startswith("*")]
    assert len(main) == 200
    assert all(re.match(r"\* +\d+  (you  |gemma)  (1/2 |2/2 )?q?\w", line) for line in main)
    deepest = [line for line in lines if "12┆" in line]
    assert deepest and all(len(line) <= 80 for line in deepest)


def test_tree_text_is_sanitized_and_one_line(capsys) -> None:
    with HistoryStore() as store:
        cid = store.create(title=CORPUS)
        store.add(cid, MessageRecord("user", "line one\nline two " + CORPUS))
    out = run(capsys, "history", "show", str(cid), "--tree")[1]
    assert leaked(out.encode()) == [] and "␛" in out
    assert len(out.splitlines()) == 2


def test_wide_characters_fit_the_width(capsys) -> None:
    from rich.cells import cell_len

    with HistoryStore() as store:
        cid = store.create(title="空はなぜ青いのですか" * 10)
        store.add(cid, MessageRecord("user", "空はなぜ青いのですか？" * 10))
        store.add(cid, MessageRecord("model", "🌍🌈 Rayleigh " * 20))
    lines = run(capsys, "history", "show", str(cid), "--tree")[1].splitlines()
    assert len(lines) == 3 and all(cell_len(line) <= 80 for line in lines), lines
    assert "…" in lines[0] and all(line.endswith("…") for line in lines[1:])


def test_tree_json(capsys) -> None:
    cid, ids = three_branches()
    code, out, _ = run(capsys, "history", "show", str(cid), "--tree", "--json")
    document = json.loads(out)
    assert code == 0 and document["branches"] == 3
    assert document["conversation"] == {"id": cid, "title": "tree", "active_id": ids["A1b"]}
    rows = document["messages"]
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[2] == {
        **rows[2],
        "parent_id": ids["A1"],
        "role": "user",
        "depth": 2,
        "starts_branch": True,
        "active": False,
        "version": 1,
        "versions": 2,
        "preview": "Q2 text",
    }
    assert [row["id"] for row in rows if row["active"]] == [ids["Q1"], ids["A1b"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [["--tree"], ["--tree", "--json"], ["--all-branches"]],
    ids=["tree", "tree-json", "all-branches"],
)
def test_on_a_terminal(options: list[str]) -> None:
    cid, ids = three_branches()
    with HistoryStore() as store:  # a hostile question that forks: quoted where it does
        hostile = store.add(cid, MessageRecord("user", "Hostile " + CORPUS, parent_id=ids["A2b"]))
        for text in ("R1 text", "R2 text"):
            store.add(cid, MessageRecord("model", text, parent_id=hostile.id))
        store.view(cid, ids["A1b"])
    code, seen = run_in_pty("history", "show", str(cid), *options)
    assert code == 0 and leaked(seen) == [], seen
    assert b"R1 text" in seen and b"R2 text" in seen
    if "--json" not in options:
        assert b"\x1b[" in seen and "␛".encode() in seen  # styled; the payload shown
    if "--tree" in options and "--json" not in options:
        assert "├─".encode() in seen


def test_markdown_shows_the_branch_viewed_and_says_there_are_more(capsys) -> None:
    cid, _ = three_branches()
    out = run(capsys, "history", "show", str(cid))[1]
    with HistoryStore() as store:
        assert out == export_markdown(store, cid)
    assert "the branch last viewed, of 3 (--all-branches shows every one)" in out
    assert re.findall(r"(\w+) text", out) == ["Q1", "A1b"]
    assert "message" not in out.split("*\n", 1)[1]  # no ids: the plain transcript


def test_markdown_all_branches(capsys) -> None:
    cid, _ = three_branches()
    code, out, _ = run(capsys, "history", "export", str(cid), "--all-branches")
    assert code == 0
    assert run(capsys, "history", "show", str(cid), "--all-branches")[1] == out
    with HistoryStore() as store:
        assert export_markdown(store, cid, all_branches=True) == out
    # Every message once: the branch viewed whole, then each other from where it leaves.
    assert re.findall(r"(\w+) text", out.replace("“", "")) == [
        "Q1",
        "A1b",
        "Q1",  # quoted where branch 2 leaves it
        "A1",
        "Q2",
        "A2",
        "A1",  # quoted where branch 3 leaves it
        "Q2b",
        "A2b",
    ]
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Branch 1 of 3 (the one last viewed)",
        "## You · message 1",
        "## Gemma · message 7",
        "## Branch 2 of 3 · after message 1",
        "## Gemma · message 2",
        "## You · message 3",
        "## Gemma · message 4",
        "## Branch 3 of 3 · after message 2",
        "## You · message 5",
        "## Gemma · message 6",
    ]
    assert "*It follows message 2, Gemma: “A1 text”*" in out


def test_markdown_all_branches_from_the_start_and_sanitized(capsys) -> None:
    with HistoryStore() as store:
        cid = store.create(title="edited first question")
        first = store.add(cid, MessageRecord("user", "first " + CORPUS)).id
        store.add(cid, MessageRecord("model", "reply", parent_id=first))
        store.add(cid, MessageRecord("user", "edited", parent_id=None))
    out = run(capsys, "history", "export", str(cid), "--all-branches")[1]
    assert "## Branch 2 of 2 · from the start" in out
    assert "It follows" not in out
    assert leaked(out.encode()) == [] and "␛" in out
    # One branch only: the same transcript as without the option.
    with HistoryStore() as store:
        single = store.create(title="one")
        store.add(single, MessageRecord("user", "hello"))
        assert export_markdown(store, single, all_branches=True) == export_markdown(store, single)


def test_list_counts_the_branches(capsys) -> None:
    cid, _ = three_branches()
    with HistoryStore() as store:
        empty = store.create(title="nothing yet")
    lines = run(capsys, "history", "list")[1].splitlines()
    assert lines[0].split() == ["ID", "UPDATED", "MSGS", "BRANCHES", "TITLE"]
    counts = {int(line.split()[0]): line.split()[3:5] for line in lines[1:]}
    assert counts == {cid: ["7", "3"], empty: ["0", "0"]}
    listed = json.loads(run(capsys, "history", "list", "--json")[1])
    assert {r["id"]: r["branch_count"] for r in listed} == {cid: 3, empty: 0}


def test_search_names_a_hit_by_the_id_ask_from_takes(capsys) -> None:
    with HistoryStore() as store:
        store.add(store.create(title="before"), MessageRecord("user", "something else"))
    cid, ids = three_branches()
    heading = run(capsys, "history", "search", "A2b")[1].splitlines()[0]
    assert heading == f"{cid}  tree  (message {ids['A2b']})"
    tree = run(capsys, "history", "show", str(cid), "--tree")[1]
    assert re.search(rf"^  {ids['A2b']}  gemma  .*A2b text$", tree, re.MULTILINE)
