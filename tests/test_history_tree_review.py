"""The conversation tree on the command line, from a second red-team review: a long
tree is linear to lay out and count, bidirectional controls are shown, options that
would do nothing are usage errors, a tree read by `head` exits 0, branch counts agree
everywhere, and versions are numbered as in the app. Each test failed before its fix."""

from __future__ import annotations

import tracemalloc

import pytest
from test_history_tree_cli import run

from gemma_chat.history.markdown import export_markdown
from gemma_chat.history.records import MessageRecord
from gemma_chat.history.store import HistoryStore
from gemma_chat.history.tree_layout import branch_count, branches
from gemma_chat.sanitize import one_line, visible


def regenerated_chain(steps: int) -> tuple[list[MessageRecord], list[int]]:
    """Q, A (regenerated once: Ab viewed), next Q after Ab, ...: 3*steps messages,
    steps+1 leaves, the active path 2*steps long."""
    messages: list[MessageRecord] = []
    active: list[int] = []
    parent = None
    next_id = 1
    for _ in range(steps):
        for role, text, on_path in (
            ("user", "q", True),
            ("model", "a", False),
            ("model", "b", True),
        ):
            pid = parent if role == "user" else messages[-1 if text == "a" else -2].id
            record = MessageRecord(role, text, parent_id=pid, id=next_id, seq=next_id - 1)
            messages.append(record)
            next_id += 1
            if on_path:
                active.append(record.id)
        parent = messages[-1].id
    return messages, active


def test_branches_of_a_long_regenerated_chain_is_not_quadratic() -> None:
    """10,000 messages (3,334 leaves, each ~3,300 deep): branches() once built every
    leaf's whole path, so memory grew with leaves x depth (97 MB here). Each message is
    now walked once (memory, unlike time, does not depend on the machine's load)."""
    messages, active = regenerated_chain(3334)
    tracemalloc.start()
    found = branches(messages, active)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(found) == 3335 == branch_count(messages, active)
    assert sum(len(branch.new) for branch in found) == len(messages)  # each message once
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB for 10,000 messages"


def test_plain_show_counts_branches_without_building_them(monkeypatch) -> None:
    """The default transcript (the branch viewed) only needs the number of branches:
    it never lays out every branch (that is --all-branches' work)."""
    import gemma_chat.history.markdown as markdown

    messages, active = regenerated_chain(50)
    with HistoryStore() as store:
        cid = store.create(title="big")
        ids: dict[int, int] = {}
        for m in messages:
            rec = MessageRecord(
                m.role, m.text, parent_id=ids.get(m.parent_id) if m.parent_id else None
            )
            ids[m.id] = store.add(cid, rec).id
        store.view(cid, ids[active[-1]])

        def no_layout(*args: object) -> None:
            raise AssertionError("every branch laid out for the branch viewed")

        monkeypatch.setattr(markdown, "branches", no_layout)
        text = export_markdown(store, cid)
    assert "the branch last viewed, of 51" in text


BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\u061c"])
def test_bidi_controls_are_shown_not_obeyed(char: str) -> None:
    """Trojan-Source style: an RLO in a title makes "t<RLO>eulb si yks" read "tsky is
    blue" on screen; an unterminated one flips the rest of the --tree heading line."""
    assert char not in one_line(f"a{char}b")
    assert char not in visible(f"a{char}b")


def test_tree_heading_with_an_unterminated_rlo_title(capsys) -> None:
    with HistoryStore() as store:
        cid = store.create(title=f"x{BIDI}seirrebwarts")
        store.add(cid, MessageRecord("user", "q"))
    code, out, _ = run(capsys, "history", "show", str(cid), "--tree")
    assert code == 0
    assert BIDI not in out


def test_tree_with_all_branches_or_verbose_is_a_usage_error(capsys) -> None:
    """--tree silently drops --all-branches / --verbose, --json drops --all-branches."""
    with HistoryStore() as store:
        cid = store.create(title="t")
        store.add(cid, MessageRecord("user", "q"))
    for extra in (["--tree", "--all-branches"], ["--json", "--all-branches"], ["--tree", "-v"]):
        code, out, _ = run(capsys, "history", "show", str(cid), *extra)
        assert code == 2, (extra, code, out[:80])


def test_tree_into_head_exits_0(tmp_path) -> None:
    """``history show ID --tree | head -1`` exits 1 (silently): the many print() calls
    hit the closed pipe inside the command, where Click's own EPIPE handler exits 1;
    every other history command (one write, flushed in cli.main) exits 0."""
    import os
    import subprocess
    import sys

    with HistoryStore() as store:
        cid = store.create(title="long")
        parent = None
        for i in range(1500):
            role = "user" if i % 2 == 0 else "model"
            parent = store.add(
                cid, MessageRecord(role, f"message {i} " + "x" * 70, parent_id=parent)
            ).id
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "history", "show", str(cid), "--tree"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, b"")


def test_branch_counts_agree_after_an_unanswered_edit_is_taken_back(capsys) -> None:
    """Q1 A1 Q2 A2; an edit Q2b of Q2 is taken back (its reply failed: the app's and
    ask's unsend): the branch viewed now ends at A1, an inner node. ``history list``
    says 1 branch, ``--tree`` and the transcript say 2 ("the branch last viewed, of 2")
    — and --all-branches writes "Branch 1 of 2" as Q1 A1, a branch that is only a
    prefix of branch 2."""
    import json as _json

    with HistoryStore() as store:
        cid = store.create(title="t")
        q1 = store.add(cid, MessageRecord("user", "Q1"))
        a1 = store.add(cid, MessageRecord("model", "A1", parent_id=q1.id))
        q2 = store.add(cid, MessageRecord("user", "Q2", parent_id=a1.id))
        store.add(cid, MessageRecord("model", "A2", parent_id=q2.id))
        q2b = store.add(cid, MessageRecord("user", "Q2b", parent_id=a1.id))
        store.delete_unanswered(cid, [q2b.id])
        assert [m.text for m in store.messages(cid)] == ["Q1", "A1"]
    listed = _json.loads(run(capsys, "history", "list", "--json")[1])
    count_list = listed[0]["branch_count"] if isinstance(listed, list) else listed
    tree_head = run(capsys, "history", "show", str(cid), "--tree")[1].splitlines()[0]
    assert f"· {count_list} branch" in tree_head, (count_list, tree_head)


def test_tree_version_numbers_match_the_apps(capsys) -> None:
    """5cb5e79 made versions "siblings of any role" (store.siblings, the app's ‹n/m›:
    a reply and a question joined after the same question are versions of each other).
    tree_layout._versions still counts per role, although its docstring says it is the
    store's siblings(): after `ask --from Q1` (a question joined to Q1, stored as Q1's
    child), the app labels A1b "‹ 2/3 ›" and --tree "2/2"; the joined question is 1/1 in
    --tree (no mark) and "‹ 3/3 ›" in the app."""
    from gemma_chat.history.branches import turn_versions

    with HistoryStore() as store:
        cid = store.create(title="t")
        q1 = store.add(cid, MessageRecord("user", "Q1"))
        a1 = store.add(cid, MessageRecord("model", "A1", parent_id=q1.id))
        a1b = store.add(cid, MessageRecord("model", "A1b", parent_id=q1.id))
        joined = store.add(cid, MessageRecord("user", "more", parent_id=q1.id))
        app_label = turn_versions(store.links(cid), [[q1.id], [a1b.id]])[1]
        siblings = [m.id for m in store.siblings(cid, a1b.id)]
    assert app_label is not None and len(app_label.ids) == 3 == len(siblings)
    out = run(capsys, "history", "show", str(cid), "--tree")[1]
    line = next(line for line in out.splitlines() if "A1b" in line)
    assert "2/3" in line, out
    assert a1.id and joined.id
