"""Attached files (``ask -f``/``prompt -f``): the labelled-block layout, exactly as token
ids on the real vocabularies, and the refusals (binary, non-UTF-8, a directory, a
missing file, a FIFO), as one-line errors with stdin's exit code."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_cli

from gemma_chat.backend.local import load_vocab
from gemma_chat.chat.attachments import (
    Attachment,
    compose_message,
    fence_for,
    file_block,
    read_attachment,
)
from gemma_chat.chat.conversation import Conversation
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.errors import UsageError
from gemma_chat.history.store import HistoryStore


def test_the_fence_outgrows_every_backtick_run_in_the_file() -> None:
    assert fence_for("no ticks") == "```"
    assert fence_for("a `` b") == "```"
    assert fence_for("```python\nx\n```") == "````"
    assert fence_for("x ````` y") == "``````"
    block = file_block("notes.md", "```\ncode\n```\n")
    assert block == "notes.md\n````\n```\ncode\n```\n````"


def test_files_then_piped_text_then_the_question() -> None:
    files = [Attachment("a.txt", "alpha\n", 6), Attachment("b.txt", "beta", 4)]
    message = compose_message(files, "  piped  \n", " why? ")
    assert message == "a.txt\n```\nalpha\n```\n\nb.txt\n```\nbeta\n```\n\npiped\n\nwhy?"
    assert compose_message(files[:1], None, None) == "a.txt\n```\nalpha\n```"
    assert compose_message([], "   ", "q") == "q"


def test_reading_a_file_normalises_like_stdin(tmp_path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    attachment = read_attachment(path)
    assert attachment.text == "line one\nline two\n"
    assert attachment.size == 23 and attachment.name == str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like binary data, not text; attach a text"),
        (b"caf\xe9 latin-1", "is not valid UTF-8 (bad byte 0xe9 at offset 3)"),
    ],
    ids=["binary", "latin1"],
)
def test_binary_and_non_utf8_files_are_refused(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"f\.bin " + message.replace("(", r"\(").split(")")[0]):
        read_attachment(path)


def test_directories_fifos_and_missing_files_are_refused(tmp_path) -> None:
    with pytest.raises(UsageError, match="is a directory, not a text file"):
        read_attachment(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is not a regular file, not a text file"):
        read_attachment(fifo)  # never blocks: opened without waiting for a writer
    with pytest.raises(UsageError, match=r"nope\.txt: no such file"):
        read_attachment(tmp_path / "nope.txt")


# Token ids of `prompt -f t1.txt q` where t1.txt holds "a `` b\n": the path on a line,
# the text in a ``` fence (its own `` cannot close it), a blank line, the question.
TINY_IDS = [2, 106, 368, 224, 157, 374, 224, 228, 224, 364, 204, 204, 204, 364, 205, 365, 204]
TINY_IDS += [204, 365, 206, 364, 204, 204, 204, 364, 364, 221, 107, 364, 106, 369]
DEMO_IDS = [2, 105, 2364, 107, 236745, 236770, 236761, 7090, 107, 2717, 107, 236746, 16181]
DEMO_IDS += [518, 107, 2717, 108, 236809, 106, 107, 105, 4368, 107]


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_the_layout_as_token_ids(which: str, tiny_models, demo_path) -> None:
    path = tiny_models["runaway"].path if which == "tiny" else demo_path
    template = GemmaTemplate(load_vocab(path))
    conversation = Conversation()
    conversation.add_user(compose_message([Attachment("t1.txt", "a `` b\n", 7)], None, "q"))
    ids = template.render_conversation(conversation)
    assert ids == (TINY_IDS if which == "tiny" else DEMO_IDS)
    text, _ = template.inspect(ids)
    assert text == (
        "<bos><start_of_turn>user\nt1.txt\n```\na `` b\n```\n\nq<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


@pytest.mark.slow
def test_prompt_shows_files_then_stdin_then_question(tiny_models, tmp_path) -> None:
    (tmp_path / "t1.txt").write_text("a `` b\n")
    (tmp_path / "t2.md").write_text("```sh\nls\n```\n")
    os.chdir(tmp_path)
    model = str(tiny_models["runaway"].path)
    proc = run_cli(
        "prompt", "-m", model, "-f", "t1.txt", "--file", "t2.md", "q", "--json", stdin=b"piped\n"
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["text"] == (
        "<bos><start_of_turn>user\nt1.txt\n```\na `` b\n```\n\nt2.md\n````\n```sh\nls\n```\n"
        "````\n\npiped\n\nq<end_of_turn>\n<start_of_turn>model\n"
    )
    single = run_cli("prompt", "-m", model, "-f", "t1.txt", "q", "--json")
    assert [t["id"] for t in json.loads(single.stdout)["tokens"]] == TINY_IDS


@pytest.mark.slow
def test_ask_answers_over_an_attached_file(tiny_models, tmp_path) -> None:
    (tmp_path / "t1.txt").write_text("a `` b\n")
    os.chdir(tmp_path)
    proc = run_cli("ask", "-m", str(tiny_models["runaway"].path), "-f", "t1.txt", "q", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "end_of_turn"
    assert result["prompt_tokens"] == len(TINY_IDS)  # the prompt `prompt -f` shows
    # The history keeps the text, and the file's name, size and tokens with it.
    with HistoryStore() as store:
        user, _ = store.messages(result["conversation_id"])
    assert user.text == "t1.txt\n```\na `` b\n```\n\nq"
    block_tokens = 21  # the block alone, by the model's tokenizer
    assert user.meta == {"attachments": [{"name": "t1.txt", "size": 7, "tokens": block_tokens}]}
    shown = run_cli("history", "show", str(result["conversation_id"])).stdout.decode()
    assert f"*Attached: `t1.txt` (7 bytes, {block_tokens} tokens)*" in shown
    exported = run_cli("history", "export", str(result["conversation_id"])).stdout.decode()
    assert "*Attached: `t1.txt`" in exported


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x00\x01\x02binary"), "looks like binary data, not text"),
        (lambda p: p.write_bytes(b"caf\xe9"), "is not valid UTF-8"),
        (lambda p: p.mkdir(), "is a directory, not a text file"),
        (lambda p: None, "no such file"),
    ],
    ids=["binary", "latin1", "directory", "missing"],
)
def test_bad_files_are_one_line_exit_2(tiny_models, tmp_path, make, message: str) -> None:
    path = tmp_path / "input"
    make(path)
    proc = run_cli("ask", "-m", str(tiny_models["runaway"].path), "-f", str(path), "q")
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: error: "), err
    assert f"{path}" in err and message in err
    assert proc.stdout == b"" and "Traceback" not in err
