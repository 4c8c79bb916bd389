"""The history in the CLI: ``gemma-chat history ...``, ``ask`` saving and continuing,
and ``--resume``/``--continue`` on the bare command.

The history commands run in-process on a real SQLite store in the per-test data dir,
filled directly through :class:`HistoryStore`. A few ``ask`` runs go end to end on the
real demo model in a subprocess (marked slow).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli

from gemma_chat import cli
from gemma_chat.cli.exchange import continued_settings, open_exchange
from gemma_chat.cli.options import HistoryOptions
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.history.recording import params_of
from gemma_chat.history.store import HistoryStore, MessageRecord, store_file
from gemma_chat.history.transfer import export_json, export_markdown

GARBAGE = b"this is not a database, but it is somebody's file\x00\xff" * 200
DEMO_FILE = "gemma-3-270m-q4_k_m.gguf"
GREEDY = ("--temperature", "0", "--seed", "1")
LONG_REPLY = ("--plain", "--no-repeat-guard", "-n", "3000")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(result: tuple[int, str, str], code: int, text: str) -> None:
    got, out, err = result
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert text in err, err
    assert "Traceback" not in err and out == ""


@pytest.fixture
def filled() -> dict[str, int]:
    """Two conversations: ``sky`` (older, with a system prompt and a full reply) and
    ``cats`` (newer, its reply stopped)."""
    with HistoryStore() as store:
        sky = store.create(system="Be brief.", params={"sampling": {"temperature": 0.0, "seed": 7}})
        store.add(sky, MessageRecord(role="user", text="Why is the sky blue?"))
        store.add(
            sky,
            MessageRecord(
                role="model",
                text="Rayleigh scattering: short blue waves scatter the most.",
                stop_reason="end_of_turn",
                prompt_tokens=20,
                completion_tokens=11,
                ttft_s=0.05,
                tokens_per_s=80.0,
                model="gemma-3-270m.gguf",
                model_sha256="ab" * 32,
                sampling={"temperature": 0.0, "seed": 7},
                token_ids=(1, 2, 3),
            ),
        )
        cats = store.create()
        store.add(cats, MessageRecord(role="user", text="Tell me about cats\nin detail"))
        store.add(
            cats,
            MessageRecord(
                role="model",
                text="Cats are small carnivores that",
                stop_reason="cancelled",
                partial=True,
                model="gemma-3-270m.gguf",
            ),
        )
    return {"sky": sky, "cats": cats}


def stored(conversation_id: int) -> tuple[object, list[MessageRecord]]:
    with HistoryStore() as store:
        return store.get(conversation_id), store.messages(conversation_id)


# ---------------------------------------------------------------------------- list


def test_list_is_newest_first_with_columns(filled, capsys) -> None:
    code, out, err = run(capsys, "history", "list")
    assert code == 0 and err == ""
    header, first, second = out.splitlines()
    assert header.split() == ["ID", "UPDATED", "MSGS", "BRANCHES", "TITLE"]
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    cats, sky = filled["cats"], filled["sky"]
    assert re.fullmatch(rf"\s*{cats}  {when}     2         1  Tell me about cats", first)
    assert re.fullmatch(rf"\s*{sky}  {when}     2         1  Why is the sky blue\?", second)

    code, out, _ = run(capsys, "history", "list", "--json")
    records = json.loads(out)
    assert [record["id"] for record in records] == [filled["cats"], filled["sky"]]
    assert records[1]["system"] == "Be brief." and records[1]["message_count"] == 2
    assert set(records[0]) == {
        "id",
        "uuid",
        "title",
        "system",
        "params",
        "created_at",
        "updated_at",
        "message_count",
        "origin",
        "active_id",
        "branch_count",
    }
    _, out, _ = run(capsys, "history", "list", "--json", "--limit", "1")
    assert [record["id"] for record in json.loads(out)] == [filled["cats"]]
    assert_one_line_error(run(capsys, "history", "list", "--limit", "0"), 2, "--limit")


def test_list_shows_local_time(monkeypatch) -> None:
    from gemma_chat.cli.history import local_time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert local_time("2026-01-31T23:00:00.000001+00:00") == "2026-02-01 04:30"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_list_of_an_empty_history(capsys) -> None:
    assert run(capsys, "history", "list") == (0, "", "gemma-chat: no saved conversations yet\n")
    assert json.loads(run(capsys, "history", "list", "--json")[1]) == []


# ---------------------------------------------------------------------- show, export


def test_show_prints_the_transcript(filled, capsys) -> None:
    code, out, _ = run(capsys, "history", "show", str(filled["sky"]))
    with HistoryStore() as store:
        assert code == 0 and out == export_markdown(store, filled["sky"])
        assert run(capsys, "history", "show", str(filled["sky"]), "--json")[1] == export_json(
            store, filled["sky"]
        )
    assert "> Be brief." in out and "## Gemma (gemma-3-270m.gguf)" in out
    assert "Rayleigh scattering" in out
    _, out, _ = run(capsys, "history", "show", str(filled["cats"]))
    assert "*(reply stopped: cancelled)*" in out
    assert_one_line_error(run(capsys, "history", "show", "99"), 2, "no conversation 99")
    assert_one_line_error(run(capsys, "history", "show", "x"), 2, "Invalid value for 'ID'")


def test_export_markdown_and_json(filled, capsys, tmp_path: Path) -> None:
    sky = str(filled["sky"])
    with HistoryStore() as store:
        markdown = export_markdown(store, filled["sky"])
        document = export_json(store, filled["sky"])
    assert run(capsys, "history", "export", sky) == (0, markdown, "")
    assert run(capsys, "history", "export", sky, "--format", "md")[1] == markdown
    assert run(capsys, "history", "export", sky, "--format", "json")[1] == document
    target = tmp_path / "sky.json"
    assert run(capsys, "history", "export", sky, "--format", "json", "-o", str(target)) == (
        0,
        "",
        "",
    )
    assert target.read_text(encoding="utf-8") == document
    assert json.loads(document)["messages"][1]["token_ids"] == [1, 2, 3]
    result = run(capsys, "history", "export", sky, "-o", str(tmp_path / "no" / "dir.md"))
    assert_one_line_error(result, 1, "cannot write")
    assert_one_line_error(run(capsys, "history", "export", sky, "--format", "pdf"), 2, "pdf")


def test_json_round_trip_through_a_fresh_store(filled, capsys, tmp_path, monkeypatch) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    sky = str(filled["sky"])
    run(capsys, "history", "export", sky, "--format", "json", "-o", str(first))
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert run(capsys, "history", "import", str(first)) == (0, f"{sky}\n", "")
    run(capsys, "history", "export", sky, "--format", "json", "-o", str(second))
    assert second.read_bytes() == first.read_bytes()
    # Importing it again is refused, and nothing is added.
    assert_one_line_error(run(capsys, "history", "import", str(first)), 2, "already in the history")
    assert json.loads(run(capsys, "history", "list", "--json")[1])[0]["message_count"] == 2


def test_import_from_stdin_takes_a_free_id(filled, capsys, monkeypatch) -> None:
    with HistoryStore() as store:
        document = export_json(store, filled["cats"])
        store.delete(filled["cats"])
        store.create(title="took the number")  # the old id is taken now
    monkeypatch.setattr(sys, "stdin", io.StringIO(document))
    code, out, _ = run(capsys, "history", "import", "-")
    assert code == 0 and int(out) not in (filled["cats"], filled["sky"])
    assert stored(int(out))[0].title == "Tell me about cats"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not valid JSON"),
        ('{"format": "gemma-chat-conversation", "version": 1}', "conversation: is required"),
        ("[1, 2]", "not a gemma-chat conversation export"),
        ('{"format": "other", "version": 1, "conversation": {}, "messages": []}', "format"),
    ],
    ids=["missing", "bad-json", "missing-field", "wrong-shape", "wrong-format"],
)
def test_import_errors_are_one_line(capsys, tmp_path, content, message) -> None:
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(run(capsys, "history", "import", str(path)), 2, message)
    assert run(capsys, "history", "list", "--json")[1] == "[]\n"


# ---------------------------------------------------------------------------- search


def test_search_shows_hits_with_snippets(filled, capsys) -> None:
    code, out, _ = run(capsys, "history", "search", "rayleigh", "blue")
    assert code == 0
    heading, snippet = out.splitlines()
    with HistoryStore() as store:
        reply = store.messages(filled["sky"])[1].id
    assert heading == f"{filled['sky']}  Why is the sky blue?  (message {reply})"
    assert snippet == "    gemma: Rayleigh scattering: short blue waves scatter the most."
    _, out, _ = run(capsys, "history", "search", "detail", "--json")
    (hit,) = json.loads(out)
    assert hit["conversation_id"] == filled["cats"] and hit["role"] == "user"
    assert hit["snippet"] == "Tell me about cats in detail" and hit["seq"] == 0
    _, out, _ = run(capsys, "history", "search", "the", "--json", "--limit", "1")
    assert len(json.loads(out)) == 1
    assert run(capsys, "history", "search", "zebra") == (
        0,
        "",
        "gemma-chat: no message matches 'zebra'\n",
    )
    assert_one_line_error(run(capsys, "history", "search", "!!"), 2, "give a word")


def test_search_matches_are_bold_on_a_terminal(filled, capsys, monkeypatch) -> None:
    monkeypatch.setattr("gemma_chat.cli.history._on_terminal", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    _, out, _ = run(capsys, "history", "search", "scatter")
    assert "\x1b[1mscattering\x1b[0m" in out and "\x1b[1mscatter\x1b[0m" in out
    assert "\x1b[1mRayleigh" not in out


# ---------------------------------------------------------------------- delete, rename


def test_delete_without_a_terminal_needs_yes(filled, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    sky = str(filled["sky"])
    assert_one_line_error(run(capsys, "history", "delete", sky), 2, "pass --yes")
    assert stored(filled["sky"])[1]  # still there
    assert run(capsys, "history", "delete", sky, "--yes") == (
        0,
        "",
        f"gemma-chat: deleted conversation {sky}\n",
    )
    assert_one_line_error(run(capsys, "history", "delete", sky, "--yes"), 2, "no conversation")
    assert [r["id"] for r in json.loads(run(capsys, "history", "list", "--json")[1])] == [
        filled["cats"]
    ]


def _delete_on_a_terminal(conversation_id: int, answer: bytes) -> tuple[int, bytes]:
    import pty
    import select

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "history", "delete", str(conversation_id)],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env=os.environ.copy(),
        close_fds=True,
    )
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        if select.select([main_fd], [], [], 0.5)[0]:
            seen += os.read(main_fd, 4096)
    os.write(main_fd, answer)
    code = proc.wait(timeout=30)
    try:
        while select.select([main_fd], [], [], 0.2)[0]:
            seen += os.read(main_fd, 4096)
    except OSError:  # the child closed the terminal
        pass
    os.close(main_fd)
    return code, seen


@pytest.mark.slow
def test_delete_asks_on_a_terminal(filled) -> None:
    code, seen = _delete_on_a_terminal(filled["sky"], b"n\n")
    assert code == 1, seen
    assert b"Delete conversation" in seen and b"Why is the sky blue?" in seen
    assert b"nothing deleted" in seen and stored(filled["sky"])[1]
    code, seen = _delete_on_a_terminal(filled["sky"], b"y\n")
    assert code == 0 and b"deleted conversation" in seen, seen
    with HistoryStore() as store:
        assert [record.id for record in store.conversations()] == [filled["cats"]]


def test_rename(filled, capsys) -> None:
    assert run(capsys, "history", "rename", str(filled["sky"]), "Sky ", " colour") == (0, "", "")
    assert stored(filled["sky"])[0].title == "Sky colour"
    assert_one_line_error(run(capsys, "history", "rename", "99", "x"), 2, "no conversation 99")
    result = run(capsys, "history", "rename", str(filled["sky"]), " ")
    assert_one_line_error(result, 2, "cannot be blank")


# ------------------------------------------------------------------ corrupt database


def write_garbage() -> Path:
    path = store_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GARBAGE)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["history", "list"],
        ["history", "list", "--json"],
        ["history", "show", "1"],
        ["history", "search", "blue"],
        ["history", "export", "1", "--format", "json"],
        ["history", "import", "EXPORT"],
        ["history", "delete", "1", "--yes"],
        ["history", "rename", "1", "new title"],
        ["--resume", "1"],
        ["--continue"],
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_a_corrupt_store_is_one_line_and_left_alone(capsys, tmp_path, monkeypatch, args) -> None:
    export = tmp_path / "export.json"
    export.write_text(
        '{"format": "gemma-chat-conversation", "version": 1, "conversation": {"uuid": "u",'
        ' "title": "t", "created_at": "x", "updated_at": "x"}, "messages": []}'
    )
    path = write_garbage()
    monkeypatch.setattr("gemma_chat.cli.inputs.stdin_is_piped", lambda stream=None: False)
    monkeypatch.setattr("gemma_chat.tui.app.run_tui", lambda *a, **k: pytest.fail("TUI opened"))
    args = [str(export) if arg == "EXPORT" else arg for arg in args]
    result = run(capsys, *args)
    assert_one_line_error(result, 1, f"the history database {path} is unreadable")
    assert "gemma-chat history move-aside" in result[2]
    assert path.read_bytes() == GARBAGE  # user data is never replaced
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.db"]


def test_move_aside_keeps_the_file_and_a_new_store_starts(capsys) -> None:
    path = write_garbage()
    code, out, _ = run(capsys, "history", "move-aside")
    moved = Path(out.strip())
    assert code == 0 and moved.parent == path.parent and moved.name.startswith("history.db.")
    assert moved.read_bytes() == GARBAGE and not path.exists()
    assert run(capsys, "history", "list", "--json")[:2] == (0, "[]\n")


def test_move_aside_refuses_a_healthy_store(filled, capsys) -> None:
    assert_one_line_error(run(capsys, "history", "move-aside"), 1, "reads fine")
    assert stored(filled["sky"])[1]
    code, out, _ = run(capsys, "history", "move-aside", "--force")
    assert code == 0 and Path(out.strip()).exists() and not store_file().exists()
    assert_one_line_error(run(capsys, "history", "move-aside"), 1, "no history database")


# ------------------------------------------------------- ask and the bare command


def ask_in_process(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``ask`` in-process, for errors that come before any model is loaded."""
    # (`gemma_chat.cli.ask` as a dotted name is the `ask` command, not the module.)
    inputs = importlib.import_module("gemma_chat.cli.inputs")
    monkeypatch.setattr(inputs, "read_piped", lambda: None)
    return run(capsys, "ask", *args)


def test_ask_opens_the_history_before_the_model(capsys, monkeypatch, tmp_path) -> None:
    # The model path does not exist, so whichever error comes first shows the order.
    path = write_garbage()
    no_model = ("-m", "/nonexistent/model.gguf")
    result = ask_in_process(capsys, monkeypatch, "hi", *no_model)
    assert_one_line_error(result, 1, "is unreadable")
    # Not saving never opens the store: a corrupt one does not matter.
    result = ask_in_process(capsys, monkeypatch, "hi", "--no-save", *no_model)
    assert_one_line_error(result, 1, "model file not found")
    config = tmp_path / "no-config.toml"  # the per-test config path (conftest)
    config.write_text("save_history = false\n")
    result = ask_in_process(capsys, monkeypatch, "hi", *no_model)
    assert_one_line_error(result, 1, "model file not found")
    assert path.read_bytes() == GARBAGE


def test_ask_continue_errors(filled, capsys, monkeypatch) -> None:
    no_model = ("-m", "/nonexistent/model.gguf")
    result = ask_in_process(capsys, monkeypatch, "hi", "--conversation", "99", *no_model)
    assert_one_line_error(result, 2, "no conversation 99 in the history")
    result = ask_in_process(capsys, monkeypatch, "hi", "-c", "--conversation", "1", *no_model)
    assert_one_line_error(result, 2, "--continue and --conversation cannot be used together")
    with HistoryStore() as store:
        for conversation_id in filled.values():
            store.delete(conversation_id)
    result = ask_in_process(capsys, monkeypatch, "hi", "--continue", *no_model)
    assert_one_line_error(result, 2, "the history is empty")


def test_resume_and_continue_open_the_tui_on_the_conversation(filled, capsys, monkeypatch):
    opened: list[tuple[object, dict]] = []
    monkeypatch.setattr("gemma_chat.cli.inputs.stdin_is_piped", lambda stream=None: False)
    monkeypatch.setattr(
        "gemma_chat.tui.app.run_tui", lambda settings, **kw: opened.append((settings, kw))
    )
    assert run(capsys, "--resume", str(filled["sky"]), "--theme", "x")[0] == 0
    assert run(capsys, "--continue")[0] == 0
    assert run(capsys, "-c", "--no-save")[0] == 0
    assert run(capsys)[0] == 0
    assert [kw for _, kw in opened] == [
        {"theme": "x", "resume": filled["sky"]},
        {"theme": None, "resume": filled["cats"]},  # the most recent
        {"theme": None, "resume": filled["cats"]},
        {"theme": None, "resume": None},
    ]
    assert [settings.save_history for settings, _ in opened] == [True, True, False, True]
    opened.clear()
    assert_one_line_error(run(capsys, "--resume", "99"), 2, "no conversation 99")
    result = run(capsys, "--resume", "1", "--continue")
    assert_one_line_error(result, 2, "--continue and --resume cannot be used together")
    with HistoryStore() as store:
        for conversation_id in filled.values():
            store.delete(conversation_id)
    assert_one_line_error(run(capsys, "--continue"), 2, "the history is empty")
    assert opened == []


def test_resume_with_options_stores_them_for_the_app(capsys, monkeypatch) -> None:
    monkeypatch.setattr("gemma_chat.cli.inputs.stdin_is_piped", lambda stream=None: False)
    monkeypatch.setattr("gemma_chat.tui.app.run_tui", lambda settings, **kw: None)
    stored_params = params_of(Sampling(top_k=7, temperature=0.9), RepeatGuard())
    with HistoryStore() as store:
        cid = store.create(system="Be terse.", params=stored_params)
        store.add(cid, MessageRecord("user", "hi"))
    assert run(capsys, "--resume", str(cid), "--temperature", "0.25", "-s", "Rhyme.")[0] == 0
    with HistoryStore() as store:
        after = store.get(cid)
    assert after.system == "Rhyme." and after.params["sampling"]["temperature"] == 0.25
    assert after.params["sampling"]["top_k"] == 7  # not given: stays as stored
    assert run(capsys, "--resume", str(cid))[0] == 0  # no options: nothing changes
    with HistoryStore() as store:
        assert store.get(cid).params == after.params and store.get(cid).system == "Rhyme."


# ------------------------------------------------- continuing: settings and crashes


def test_continuing_restores_settings_unless_given(filled) -> None:
    with HistoryStore() as store:
        record = store.get(filled["sky"])
    restored = continued_settings(build_settings(), record, frozenset())
    assert restored.system == "Be brief."
    assert restored.sampling.temperature == 0.0 and restored.sampling.seed == 7
    given = build_settings(temperature=0.5, system="New.", no_repeat_guard=True, seed=0)
    explicit = frozenset({"temperature", "system", "no_repeat_guard", "seed"})
    settings = continued_settings(given, record, explicit)
    assert settings.system == "New." and settings.sampling.temperature == 0.5
    assert settings.sampling.seed == 0 and not settings.repeat_guard.enabled


def test_a_message_left_without_a_reply_is_answered_with_the_new_one(filled) -> None:
    # The process died after saving a user message (no reply): continuing answers both,
    # stores only the new one, and a message that cannot be answered is taken back.
    with HistoryStore() as store:
        store.add(filled["sky"], MessageRecord(role="user", text="And at sunset?"))
    info = SimpleNamespace(sha256="ab" * 32, display_name="m.gguf")
    options = HistoryOptions(conversation=filled["sky"])
    exchange = open_exchange(build_settings(), options)
    try:
        conversation = exchange.conversation(info, "Answer both, please.")
        assert conversation.turns[-1].text == "And at sunset?\n\nAnswer both, please."
        assert conversation.turns[1].token_ids == (1, 2, 3)  # same model: ids kept
        texts = [message.text for message in stored(filled["sky"])[1]]
        assert texts[2:] == ["And at sunset?", "Answer both, please."]
        exchange.unsend()
        assert len(stored(filled["sky"])[1]) == 3
    finally:
        exchange.close()
    exchange = open_exchange(build_settings(), HistoryOptions())
    try:
        exchange.conversation(info, "A new one")
        new_id = exchange.conversation_id
        assert new_id is not None and stored(new_id)[1][0].text == "A new one"
        exchange.unsend()  # a conversation this run created goes away entirely
        assert exchange.conversation_id is None
        with HistoryStore() as store:
            assert {record.id for record in store.conversations()} == set(filled.values())
    finally:
        exchange.close()


# ----------------------------------------------------- end to end on the demo model


def ask_json(*args: str, stdin: bytes = b"") -> dict:
    proc = run_cli(*args, "--json", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_ask_saves_the_exchange(demo_path: Path) -> None:
    result = ask_json("ask", "Why is the sky blue?", "-n", "8", *GREEDY)
    record, messages = stored(result["conversation_id"])
    assert [m.role for m in messages] == ["user", "model"]
    assert messages[0].text == "Why is the sky blue?" and record.title == "Why is the sky blue?"
    assert record.origin == "ask"  # the app's sidebar can tell one-shots apart
    reply = messages[1]
    assert reply.text == result["text"] and reply.stop_reason == result["stop_reason"]
    assert reply.prompt_tokens == result["prompt_tokens"] > 0
    assert reply.completion_tokens == result["completion_tokens"] > 0
    assert reply.ttft_s is not None and reply.tokens_per_s is not None
    assert reply.model == DEMO_FILE
    assert reply.model_sha256 == hashlib.sha256(demo_path.read_bytes()).hexdigest()
    assert reply.sampling["seed"] == 1 and reply.sampling["temperature"] == 0.0
    assert reply.sampling["max_tokens"] == 8 and reply.token_ids
    assert record.params["sampling"]["temperature"] == 0.0


@pytest.mark.slow
def test_ask_continue_and_conversation_and_resume(demo_path: Path) -> None:
    first = ask_json("ask", "My name is Ada.", "-s", "Answer briefly.", "-n", "6", *GREEDY)
    conversation_id = first["conversation_id"]
    # -c: the stored settings come back (temperature 0, seed 1: not the defaults), and
    # an option given now (-n 10) wins and is stored with the conversation.
    second = ask_json("ask", "-c", "What is my name?", "-n", "10")
    assert second["conversation_id"] == conversation_id
    record, messages = stored(conversation_id)
    assert len(messages) == 4 and messages[3].text == second["text"]  # only the new reply
    # The follow-up's prompt held the whole history.
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["completion_tokens"]
    assert messages[3].prompt_tokens == second["prompt_tokens"]
    assert messages[3].sampling["temperature"] == 0.0 and messages[3].sampling["seed"] == 1
    assert messages[3].sampling["max_tokens"] == 10
    assert record.system == "Answer briefly." and record.params["sampling"]["max_tokens"] == 10
    # --conversation ID, with a new system prompt, printing plain text.
    proc = run_cli(
        "ask", "--conversation", str(conversation_id), "-s", "Be terse.", "Again?", "--plain"
    )
    assert proc.returncode == 0, proc.stderr
    record, messages = stored(conversation_id)
    assert proc.stdout.decode() == messages[5].text + "\n"
    assert record.system == "Be terse." and messages[5].prompt_tokens > second["prompt_tokens"]
    # The bare command with a pipe and --resume continues it like ask.
    third = ask_json("--resume", str(conversation_id), "-n", "4", stdin=b"And now?")
    assert third["conversation_id"] == conversation_id
    assert [m.text for m in stored(conversation_id)[1][6:]] == ["And now?", third["text"]]


@pytest.mark.slow
def test_no_save_stores_nothing_even_with_a_corrupt_store(demo_path: Path) -> None:
    result = ask_json("ask", "hi", "--no-save", "-n", "4", *GREEDY)
    assert result["conversation_id"] is None and result["text"]
    assert not store_file().parent.exists()  # the store was never even opened
    path = write_garbage()
    assert ask_json("ask", "hi", "--no-save", "-n", "4", *GREEDY)["conversation_id"] is None
    assert path.read_bytes() == GARBAGE


@pytest.mark.slow
def test_a_message_too_long_for_the_context_is_not_kept(demo_path: Path, filled) -> None:
    before = stored(filled["cats"])[1]
    long = "word " * 600  # passes the byte check, but is more than 256 tokens
    for args in (["ask"], ["ask", "-c"]):
        proc = run_cli(*args, "--ctx", "256", "-n", "4", "--long", "refuse", stdin=long.encode())
        assert proc.returncode == 1 and b"too long" in proc.stderr, proc.stderr
    with HistoryStore() as store:
        assert {record.id for record in store.conversations()} == set(filled.values())
    assert stored(filled["cats"])[1] == before


@pytest.mark.slow
def test_ctrl_c_saves_the_partial_reply(demo_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "ask", "Count to a thousand", *LONG_REPLY],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    assert proc.stdout.read(1)  # the reply has started
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    with HistoryStore() as store:
        (record,) = store.conversations()
        user, reply = store.messages(record.id)
    assert user.text == "Count to a thousand"
    assert reply.partial and reply.stop_reason == "cancelled" and reply.text.strip()
    # No --seed: the seed actually drawn is recorded, so the reply can be reproduced.
    assert isinstance(reply.sampling["seed"], int) and record.params["sampling"]["seed"] is None


# ------------------------------------------------------------ export targets (#10.2)


def _refused(result: tuple[int, str, str]) -> None:
    assert_one_line_error(result, 2, "not writing an export to")


def test_export_never_overwrites_the_database(filled, capsys, tmp_path, monkeypatch) -> None:
    db = store_file()
    before = db.read_bytes()
    sky = str(filled["sky"])
    (tmp_path / "link.db").symlink_to(db)
    os.link(db, tmp_path / "hard.db")
    monkeypatch.chdir(tmp_path)
    targets = [
        str(db),
        "./data/../data/history.db",
        "link.db",
        "hard.db",
        str(db) + "-wal",  # not there now (the store is closed): refused by path
        "data/history.db-shm",
        os.environ["GEMMA_CHAT_CONFIG"],  # the config file, also when it does not exist
    ]
    for target in targets:
        for form in ("md", "json"):
            for force in ((), ("--force",)):
                _refused(run(capsys, "history", "export", sky, "-f", form, "-o", target, *force))
    assert db.read_bytes() == before
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    assert json.loads(run(capsys, "history", "list", "--json")[1])[0]["message_count"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_export_never_overwrites_the_kv_cache(filled, capsys, tmp_path, monkeypatch) -> None:
    from gemma_chat.backend.kv_cache import cache_dir

    monkeypatch.setenv("GEMMA_CHAT_CACHE_DIR", str(tmp_path / "cache"))
    kv = cache_dir()
    kv.mkdir(parents=True)
    state = kv / "0123.kv"
    state.write_bytes(b"KV state")
    os.link(state, tmp_path / "elsewhere.kv")
    sky = str(filled["sky"])
    for target in (state, kv / "new.md", tmp_path / "elsewhere.kv", tmp_path / "cache" / "x"):
        _refused(run(capsys, "history", "export", sky, "-o", str(target), "--force"))
    assert state.read_bytes() == b"KV state"


def test_export_never_overwrites_the_app_state_models_or_themes(
    filled, capsys, tmp_path, monkeypatch
) -> None:
    """The app's state file, downloaded models and user themes are gemma-chat's too."""
    from gemma_chat.config.ui_prefs import state_file
    from gemma_chat.paths import config_dir, models_dir

    monkeypatch.delenv("GEMMA_CHAT_MODELS_DIR", raising=False)
    state, model, theme = (
        state_file(),
        models_dir() / "big.gguf",
        config_dir() / "themes" / "t.toml",
    )
    for own in (state, model, theme):
        own.parent.mkdir(parents=True, exist_ok=True)
        own.write_bytes(b"mine")
    sky = str(filled["sky"])
    for target in (state, model, theme, models_dir() / "new.md", config_dir() / "themes" / "x"):
        _refused(run(capsys, "history", "export", sky, "-o", str(target), "--force"))
    assert [own.read_bytes() for own in (state, model, theme)] == [b"mine"] * 3


def test_export_replaces_a_file_only_with_force_and_atomically(filled, capsys, tmp_path) -> None:
    sky = str(filled["sky"])
    target = tmp_path / "sky.md"
    target.write_text("my notes")
    assert_one_line_error(
        run(capsys, "history", "export", sky, "-o", str(target)), 2, "pass --force"
    )
    assert target.read_text() == "my notes"
    target.chmod(0o640)
    inode = target.stat().st_ino
    link = tmp_path / "link.md"
    link.symlink_to(target)
    assert run(capsys, "history", "export", sky, "-o", str(link), "--force") == (0, "", "")
    assert link.is_symlink()  # the file it points to was replaced, not the link
    assert target.read_text().startswith("# Why is the sky blue?")
    assert target.stat().st_ino != inode  # renamed over, not rewritten in place
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert_one_line_error(
        run(capsys, "history", "export", sky, "-o", str(tmp_path)), 2, "it is a folder"
    )


# ------------------------------------------------------------ ids and numbers (#10.3)


def _export_with(tmp_path: Path, name: str, **conversation: object) -> Path:
    document = {
        "format": "gemma-chat-conversation",
        "version": 1,
        "conversation": {
            "title": name,
            "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00",
            **conversation,
        },
        "messages": [{"role": "user", "text": name, "created_at": "2026-01-01T00:00:00+00:00"}],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def test_importing_the_largest_id_then_deleting_it_keeps_saving(tmp_path: Path) -> None:
    absurd = _export_with(tmp_path, "edge", id=2**63 - 1, uuid="edge")
    imported = run_cli("history", "import", str(absurd))
    assert imported.returncode == 0, imported.stderr
    new_id = int(imported.stdout)
    assert new_id < 2**31
    deleted = run_cli("history", "delete", "--yes", str(new_id))
    assert deleted.returncode == 0, deleted.stderr
    # Every later save works: another import and a conversation started in the store.
    later = run_cli("history", "import", str(_export_with(tmp_path, "later", uuid="later")))
    assert later.returncode == 0 and int(later.stdout) == new_id + 1, later.stderr
    with HistoryStore() as store:
        assert store.create() == new_id + 2


@pytest.mark.slow
def test_ask_saves_after_an_absurd_import_was_deleted(demo_path: Path, tmp_path: Path) -> None:
    absurd = _export_with(tmp_path, "edge", id=2**63 - 1, uuid="edge")
    new_id = int(run_cli("history", "import", str(absurd)).stdout)
    assert run_cli("history", "delete", "--yes", str(new_id)).returncode == 0
    result = ask_json("ask", "Hello", "-n", "2", *GREEDY)
    assert result["conversation_id"] == new_id + 1


@pytest.mark.parametrize("command", [("list",), ("search", "sky")])
def test_a_huge_limit_is_no_limit(filled, capsys, command) -> None:
    code, out, err = run(capsys, "history", *command, "--limit", "99999999999999999999")
    assert code == 0 and err == "" and out


# ------------------------------------------------------------ bounded search (#10.13)


def test_search_output_is_bounded_for_a_huge_word(capsys) -> None:
    with HistoryStore() as store:
        cid = store.create()
        store.add(cid, MessageRecord(role="user", text="huge " + "w" * 3_000_000))
    code, out, _ = run(capsys, "history", "search", "huge")
    assert code == 0 and 0 < len(out) < 1000 and "huge" in out
    code, out, _ = run(capsys, "history", "search", "wwww", "--json")
    assert code == 0 and len(out) < 2000
    assert json.loads(out)[0]["snippet"].startswith("huge www")


# ------------------------------------------------------------- bounded import (#10.5, #10.8)


def _limited_memory() -> None:
    """Cap the child's address space, so a read that is not bounded fails fast instead
    of eating the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))


def _import_cli(*args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gemma_chat", "history", "import", *args],
        stdin=stdin,
        capture_output=True,
        timeout=120,
        preexec_fn=_limited_memory,
    )


def _assert_usage_line(proc: subprocess.CompletedProcess[bytes], text: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and text in err and "internal error" not in err, err


def test_import_reads_only_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    _assert_usage_line(_import_cli(str(fifo)), "is not a regular file")
    _assert_usage_line(_import_cli("/dev/zero"), "is not a regular file")
    _assert_usage_line(_import_cli(str(tmp_path)), "is not a regular file")


def test_import_from_an_endless_stdin_is_capped() -> None:
    endless = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        _assert_usage_line(_import_cli("-", stdin=endless.stdout), "more than 64 MiB")
    finally:
        endless.kill()
        endless.wait()


def test_an_import_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as out:
        out.truncate(64 * 2**20 + 1)  # sparse: no disk used
    _assert_usage_line(_import_cli(str(big)), "larger than 64 MiB")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "gemma-chat-conversation", "x\\udfff": 1}', "not valid Unicode"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"params": ' * 5_000 + "1" + "}" * 5_000, "nested too deeply"),
    ],
    ids=["surrogate", "deep-array", "deep-object"],
)
def test_hostile_imports_are_usage_errors(capsys, tmp_path, content, message) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    assert_one_line_error(run(capsys, "history", "import", str(path)), 2, message)


def test_import_lists_every_problem_on_one_line(capsys, tmp_path) -> None:
    messages = [{"role": "system", "text": 1, "created_at": "x"} for _ in range(12)]
    document = {
        "format": "gemma-chat-conversation",
        "version": 1,
        "conversation": {"uuid": "", "title": "t", "created_at": "x", "\x1b]0;" + "k" * 99: 1},
        "messages": messages,
    }
    path = tmp_path / "in.json"
    path.write_text(json.dumps(document))
    code, out, err = run(capsys, "history", "import", str(path))
    assert_one_line_error((code, out, err), 2, "messages.0.role: must be 'user' or 'model'")
    assert "messages.0.text: must be text" in err
    assert "conversation.uuid: must not be empty" in err
    assert "Input should" not in err and "String should" not in err  # plain words only
    assert "; and 7 more" in err  # 27 problems (3 in conversation, 2 per message): 20 shown
    assert "\x1b" not in err and "k" * 50 not in err


def test_a_huge_imported_title_is_shown_on_one_bounded_line(capsys) -> None:
    """An import keeps a title whole (nothing is lost), whatever its size; ``list``,
    ``search`` and ``delete`` show its beginning on one line, cut with an ellipsis."""
    title = "Big\n" + "word " * 400_000 + "\x1b]0;pwned\x07"
    with HistoryStore() as store:
        big = store.create(title=title)
        needle = store.add(big, MessageRecord(role="user", text="a needle in a haystack")).id
        assert store.get(big).title == title  # stored losslessly
    _, out, _ = run(capsys, "history", "list")
    (line,) = [line for line in out.splitlines() if line.lstrip().startswith(str(big))]
    shown = line.split("  ")[-1]
    assert len(shown) == 200 and shown.startswith("Big word ") and shown.endswith("…")
    _, out, _ = run(capsys, "history", "search", "needle")
    heading, _snippet = out.splitlines()
    assert heading.startswith(f"{big}  Big word ") and heading.endswith(f"…  (message {needle})")
    assert len(heading) < 250 and "\x1b" not in out
