"""Untrusted text never drives the terminal (issue 10, item 1), through every CLI path.

Each test runs the real ``gemma-chat`` in a pty (or a pipe where the pipe is the point)
and asserts on the raw bytes received: none of the hostile payloads' sequences
(:data:`escapes.FORBIDDEN`) arrive, and their visible stand-in ``␛`` does. The sources
are real: a SQLite history holding the corpus, a loopback server streaming it, and a
tiny Gemma 2 GGUF whose file name and ``general.name`` carry it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from escapes import CORPUS, FILE_SAFE, PAYLOADS, SHOWN, leaked, strip_legit
from sse_server import SSEServer, _chunk
from tinygemma import build_tiny_gemma2

from gemma_chat.history.store import HistoryStore, MessageRecord

SHOWN_BYTES = SHOWN.encode()


def run_in_pty(
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    python: list[str] | None = None,
) -> Any:
    """Run ``gemma-chat ARGS`` with stdin, stdout and stderr on a pty (120x40); return
    the exit code and every byte the terminal received. ``python``: the interpreter's
    arguments instead of ``-m gemma_chat`` (a script that patches, then runs the CLI)."""
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, *(python or ["-m", "gemma_chat"]), *args],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "xterm-256color", **(env or {})},
        close_fds=True,
    )
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([main_fd], [], [], 0.2)[0]:
                try:
                    data = os.read(main_fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                seen += data
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main_fd)
    return code, seen


def assert_safe(data: bytes, *, shown: bool = True) -> None:
    assert leaked(data) == [], data
    if shown:
        assert SHOWN_BYTES in data, data


# ------------------------------------------------------------------------- history


@pytest.fixture
def hostile_history() -> int:
    """A stored conversation whose title, system prompt, messages and model name hold
    the corpus (as an imported file could)."""
    with HistoryStore() as store:
        cid = store.create(title=CORPUS, system=CORPUS)
        store.add(cid, MessageRecord("user", "Hostile question " + CORPUS))
        store.add(
            cid,
            MessageRecord("model", CORPUS, stop_reason="end_of_turn", model="evil" + FILE_SAFE),
        )
    return cid


@pytest.mark.parametrize(
    "command",
    [
        ["history", "list"],
        ["history", "show", "{id}"],
        ["history", "search", "Hostile"],
        ["history", "export", "{id}"],
        ["history", "show", "{id}", "--json"],
        ["history", "list", "--json"],
        ["history", "search", "Hostile", "--json"],
    ],
    ids=["list", "show", "search", "export-md", "show-json", "list-json", "search-json"],
)
def test_history_on_a_terminal(hostile_history: int, command: list[str]) -> None:
    args = [part.format(id=hostile_history) for part in command]
    code, seen = run_in_pty(*args)
    assert code == 0, seen
    # JSON escapes the controls (\u001b, \u009b): nothing to show, nothing obeyed.
    assert_safe(seen, shown="--json" not in args)


def test_history_export_files(hostile_history: int, tmp_path: Path) -> None:
    """Markdown export is sanitized (it is for reading); JSON stays lossless."""
    md, js = tmp_path / "out.md", tmp_path / "out.json"
    assert run_cli("history", "export", str(hostile_history), "-o", str(md)).returncode == 0
    proc = run_cli("history", "export", str(hostile_history), "-f", "json", "-o", str(js))
    assert proc.returncode == 0, proc.stderr
    text = md.read_bytes()
    assert_safe(text)
    assert "\x1b" not in text.decode() and "\x9b" not in text.decode()
    document = json.loads(js.read_text(encoding="utf-8"))
    assert document["conversation"]["system"] == CORPUS
    assert document["messages"][1]["text"] == CORPUS  # every control kept
    assert b"\xc2\x9b" not in js.read_bytes()  # C1 as a \u escape, not a raw character
    # And it imports back exactly (into another history).
    other = tmp_path / "other-data"
    proc = run_cli("history", "import", str(js), env={"GEMMA_CHAT_DATA_DIR": str(other)})
    assert proc.returncode == 0, proc.stderr
    with HistoryStore(other / "history.db") as store:
        [_, reply] = store.messages(int(proc.stdout))
    assert reply.text == CORPUS


# ----------------------------------------------------------------------------- ask


class HostileServer(SSEServer):
    """The test SSE server, plus modes that stream the corpus or fail with it; the model
    it serves has a hostile id."""

    MODEL = "evil-model" + FILE_SAFE

    def __init__(self) -> None:
        super().__init__()
        server = self

        def do_get(handler: Any) -> None:
            server._record(handler, None)
            handler._json(200, {"data": [{"id": server.MODEL, "max_model_len": 4096}]})

        self.handler.do_GET = do_get  # type: ignore[method-assign]

    def _answer(self, h: Any, mode: str, body: dict[str, Any]) -> None:
        if mode == "hostile_error":
            h._json(500, {"error": {"message": "boom " + CORPUS}})
            return
        if mode != "hostile":
            super()._answer(h, mode, body)
            return
        chat = h.path.endswith("/chat/completions")
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        # Split mid-sequence (every 3 characters) and between a CR and its LF.
        pieces = [CORPUS[i : i + 3] for i in range(0, len(CORPUS), 3)]
        pieces += ["\n\nline one\r", "\nline two", "\n\n" + PAYLOADS["md_link"] + "\n"]
        for piece in [*pieces, ""]:
            payload = _chunk(piece, "stop" if not piece else None, chat=chat)
            h.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            h.wfile.flush()
        h.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def ask_args(server: HostileServer, mode: str = "hostile", *extra: str) -> list[str]:
    return ["ask", "hi", "--base-url", server.url(mode), "--no-save", *extra]


@pytest.mark.parametrize("extra", [[], ["--plain"], ["--stats"]], ids=["rich", "plain", "stats"])
def test_ask_on_a_terminal(hostile_server: HostileServer, extra: list[str]) -> None:
    code, seen = run_in_pty(*ask_args(hostile_server, "hostile", *extra))
    assert code == 0, seen
    assert_safe(seen)
    if extra == ["--stats"]:  # the stats line names the server's model
        assert b"evil-model" in seen
    if extra == ["--plain"]:  # a CRLF split across chunks is one line end (rich wraps)
        assert b"line one\r\nline two" in seen


def test_ask_json_on_a_terminal_is_lossless(hostile_server: HostileServer) -> None:
    code, seen = run_in_pty(*ask_args(hostile_server, "hostile", "--json"))
    assert code == 0, seen
    assert_safe(seen, shown=False)
    result = json.loads(strip_legit(seen).decode())
    assert result["text"].startswith(CORPUS)


def test_ask_piped_is_sanitized_unless_raw(hostile_server: HostileServer) -> None:
    """Piped output is sanitized by default (a pipe often ends on a terminal); --raw
    writes the model's text unchanged."""
    proc = run_cli(*ask_args(hostile_server))
    assert proc.returncode == 0, proc.stderr
    assert_safe(proc.stdout)
    assert "\x1b" not in proc.stdout.decode() and b"\r" not in proc.stdout
    proc = run_cli(*ask_args(hostile_server, "hostile", "--raw"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith(CORPUS)
    assert b"line one\r\nline two" in proc.stdout


def test_raw_on_a_terminal_is_a_usage_error(hostile_server: HostileServer) -> None:
    before = len(hostile_server.requests)
    code, seen = run_in_pty(*ask_args(hostile_server, "hostile", "--raw"))
    assert code == 2, seen
    text = strip_legit(seen).decode()
    assert text.count("\n") == 1 and "--raw" in text and "terminal" in text, text
    assert len(hostile_server.requests) == before  # refused before anything was asked


@pytest.mark.parametrize(
    ("mode", "extra", "quoted"),
    [("hostile_error", [], "boom"), ("hostile", ["--model", "nosuch"], "evil-model")],
    ids=["error-text", "model-ids"],
)
def test_a_server_error_quoting_escapes_is_one_safe_line(
    hostile_server: HostileServer, mode: str, extra: list[str], quoted: str
) -> None:
    """The server's error text, or its model ids in gemma-chat's own error."""
    code, seen = run_in_pty(*ask_args(hostile_server, mode, *extra))
    assert code == 1, seen
    assert_safe(seen)
    text = strip_legit(seen).decode()
    assert text.count("\n") == 1 and quoted in text, text


# -------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 2 GGUF whose file name and general.name hold hostile sequences."""
    folder = tmp_path_factory.mktemp("hostile-models")
    model = build_tiny_gemma2(folder / f"evil{FILE_SAFE}.gguf", ("Hi",), name=CORPUS)
    return model.path


@pytest.mark.parametrize(
    "command",
    [["models"], ["models", "info", "{path}"], ["doctor", "--model", "{path}"]],
    ids=["models", "models-info", "doctor"],
)
def test_model_metadata_and_file_names(hostile_model: Path, command: list[str]) -> None:
    args = [part.format(path=hostile_model) for part in command]
    code, seen = run_in_pty(*args, env={"GEMMA_CHAT_MODELS_DIR": str(hostile_model.parent)})
    assert code == 0, seen
    assert_safe(seen)
    assert b"evil" in seen


def test_models_json_is_lossless(hostile_model: Path) -> None:
    proc = run_cli("models", "info", str(hostile_model), "--json")
    assert proc.returncode == 0, proc.stderr
    assert b"\xc2\x9b" not in proc.stdout and b"\x1b" not in proc.stdout
    assert json.loads(proc.stdout)["metadata"]["general.name"] == CORPUS


def test_prompt_inspector(demo_path: Path) -> None:
    """The inspector spells control tokens as text on purpose; the text around them is
    still sanitized (on a terminal and piped); --json keeps it exactly."""
    code, seen = run_in_pty("prompt", CORPUS, "--model", str(demo_path))
    assert code == 0, seen
    assert_safe(seen)
    assert b"<start_of_turn>" in seen
    proc = run_cli("prompt", CORPUS, "--model", str(demo_path))
    assert proc.returncode == 0, proc.stderr
    assert_safe(proc.stdout)
    proc = run_cli("prompt", CORPUS, "--model", str(demo_path), "--json")
    assert CORPUS in json.loads(proc.stdout)["text"]


def test_remote_errors_quote_the_server_safely(hostile_server: HostileServer) -> None:
    """The backend's own error already shows the server's text safely, for every place
    that shows it (the app's notices, ``--debug``), not only the CLI's error line."""
    from gemma_chat.backend.remote import OpenAIBackend
    from gemma_chat.backend.sse import RemoteError
    from gemma_chat.config.settings import Sampling
    from gemma_chat.sanitize import has_controls

    remote = OpenAIBackend(hostile_server.url("hostile_error"), model="m", n_ctx=2048)
    with pytest.raises(RemoteError) as info:
        list(remote.stream_text("p", messages=[], sampling=Sampling(), seed=1, stop=[]))
    text = str(info.value)
    assert "boom" in text and SHOWN in text and not has_controls(text)
