"""The remote backend's configuration: settings, ``[remote.NAME]`` profiles, the command
line, the API key (which must never leak), the loader and the TUI's remote wiring.

End-to-end replies from a real llama.cpp server are in ``test_remote_e2e.py``; the small
stdlib server here only lists a model and streams one fixed reply.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli
from tui_support import notifications, send, wait_until

from gemma_chat.chat.conversation import StopReason
from gemma_chat.cli.ask import result_dict, stats_line
from gemma_chat.cli.exchange import Exchange
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.config.remote import api_key
from gemma_chat.config.settings import RemoteProfile, Settings
from gemma_chat.errors import UsageError
from gemma_chat.models.loader import RemoteModelInfo

MARKER = "sk-MARKER-7f3a9c-never-print-me"
"""The API key in every test: it must not appear in any output or file."""

PROFILES = """
[remote.box]
base_url = "http://gpu-box:8080/v1/"
api_key_env = "BOX_KEY"
model = "gemma-2-27b-it"
ctx = 8192

[remote.vllm]
base_url = "https://vllm.example:8000/v1"
"""


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(path))
    return path


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------- settings model


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://host/v1", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("localhost:8080", "http:// or https://"),
        ("http://host:99999/v1", "not a valid URL"),
        ("http://host/v1?key=x", "query"),
        ("http://user:hunter2@host/v1", "credentials"),
    ],
)
def test_bad_base_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_settings(base_url=url)
    message = str(caught.value)
    assert message.startswith("base_url (--base-url): ") and why in message
    assert "\n" not in message and "hunter2" not in message


def test_good_base_urls_are_normalised() -> None:
    assert Settings(base_url="http://127.0.0.1:8080/v1/").base_url == "http://127.0.0.1:8080/v1"
    assert RemoteProfile(base_url=" https://box/v1 ").base_url == "https://box/v1"


def test_api_key_env_holds_a_name_not_a_key() -> None:
    assert Settings(api_key_env="OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"
    with pytest.raises(ValueError, match="names the environment variable") as caught:
        Settings(api_key_env="sk-live-1234")
    assert "sk-live-1234" not in str(caught.value).splitlines()[1].split("[")[0]


# --------------------------------------------------------------- merging the sources


def test_profile_fills_the_settings(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, PROFILES)
    settings = build_settings(remote="box")
    assert settings.backend == "openai" and settings.profile == "box"
    assert settings.base_url == "http://gpu-box:8080/v1"
    assert (settings.api_key_env, settings.model, settings.ctx) == (
        "BOX_KEY",
        "gemma-2-27b-it",
        8192,
    )


def test_command_line_wins_over_the_profile(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, PROFILES)
    settings = build_settings(remote="box", base_url="http://other:1/v1", model="m2", ctx=4096)
    assert (settings.base_url, settings.model, settings.ctx) == ("http://other:1/v1", "m2", 4096)
    assert settings.api_key_env == "BOX_KEY"  # never on the command line


def test_profile_in_the_config_is_the_default_and_local_overrides_it(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, 'profile = "vllm"\nmodel = "my.gguf"\n' + PROFILES)
    remote = build_settings()
    assert remote.backend == "openai" and remote.base_url == "https://vllm.example:8000/v1"
    assert remote.model is None  # the local model file is never sent to a server
    local = build_settings(backend="local")
    assert local.backend == "local" and local.model == str((tmp_path / "my.gguf").resolve())


def test_base_url_alone_means_openai_and_ignores_local_model_names(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, 'model = "gemma-2-2b-it.gguf"\n')
    monkeypatch.setenv("GEMMA_CHAT_MODEL", "demo")
    settings = build_settings(base_url="http://127.0.0.1:8080/v1")
    assert settings.backend == "openai" and settings.model is None


def test_config_chosen_openai_keeps_its_server_model_as_an_id(tmp_path, monkeypatch) -> None:
    # "google/gemma-2-27b-it" looks like a path; with backend = "openai" it is an id.
    write_config(
        tmp_path,
        monkeypatch,
        'backend = "openai"\nbase_url = "http://h:8000/v1"\nmodel = "google/gemma-2-27b-it"\n',
    )
    assert build_settings().model == "google/gemma-2-27b-it"


def test_unknown_profile_lists_the_known_ones(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, PROFILES)
    with pytest.raises(
        UsageError, match=r"no remote profile 'nope' in the config; profiles: box, vllm"
    ):
        build_settings(remote="nope")


def test_api_key_comes_from_the_named_variable(monkeypatch) -> None:
    monkeypatch.setenv("BOX_KEY", MARKER)
    assert api_key("BOX_KEY") == MARKER
    assert api_key(None) is None
    monkeypatch.delenv("BOX_KEY")
    with pytest.raises(UsageError) as caught:
        api_key("BOX_KEY", "box")
    assert str(caught.value) == (
        "api_key_env (in [remote.box]) names $BOX_KEY, which is not set or empty: "
        "export the API key in it"
    )
    with pytest.raises(UsageError) as caught:
        api_key("abcdef0123456789abcdef")  # a key pasted as the name is not repeated
    assert "abcdef0123456789abcdef" not in str(caught.value)


# ----------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "openai"], "the openai backend needs a server: --base-url URL"),
        (["--backend", "cloud"], "--backend takes 'local' or 'openai', not 'cloud'"),
        (["--base-url", "ftp://x"], "base_url (--base-url): needs an http:// or https:// URL"),
        (["--remote", "nope"], "no remote profile 'nope' in the config; profiles: box, vllm"),
        (["--remote", "box", "--backend", "local"], "--remote names a server: it cannot go"),
        (["--remote", "box"], "names $BOX_KEY, which is not set or empty"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, monkeypatch, args, message) -> None:
    write_config(tmp_path, monkeypatch, PROFILES)
    monkeypatch.delenv("BOX_KEY", raising=False)
    proc = run_cli("ask", "hi", *args, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert proc.stdout == b""


def test_tui_with_an_unset_key_fails_before_the_app_starts(tmp_path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, PROFILES)
    monkeypatch.delenv("BOX_KEY", raising=False)
    primary, terminal = pty.openpty()  # a terminal on stdin: the TUI path, not `ask`
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gemma_chat", "--remote", "box"],
            stdin=terminal,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(primary)
        os.close(terminal)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "$BOX_KEY" in err


def test_prompt_inspector_stays_local_with_a_remote_profile(
    tmp_path, monkeypatch, demo_path
) -> None:
    write_config(tmp_path, monkeypatch, 'profile = "box"\n' + PROFILES)
    proc = run_cli("prompt", "hi", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "<start_of_turn>model" in json.loads(proc.stdout)["text"]


def test_no_option_takes_the_key_itself() -> None:
    proc = run_cli("ask", "--help", timeout=60)
    text = proc.stdout.decode()
    assert "--base-url" in text and "--remote" in text and "--backend" in text
    assert "--api-key" not in text


@pytest.mark.parametrize("extra", [[], ["--json"], ["--debug"], ["--stats", "--json", "--debug"]])
def test_the_key_never_appears_in_any_output(tmp_path, monkeypatch, extra) -> None:
    """A real run against a closed port, the key set: it fails in one line (or a
    traceback with --debug) and the key is nowhere, not even in the history files."""
    write_config(tmp_path, monkeypatch, 'api_key_env = "GEMMA_TEST_KEY"\n')
    url = f"http://127.0.0.1:{free_port()}/v1"
    proc = run_cli(
        "ask", "hi", "--backend", "openai", "--base-url", url, *extra,
        env={"GEMMA_TEST_KEY": MARKER}, timeout=60,
    )  # fmt: skip
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 1, err
    assert MARKER not in out and MARKER not in err
    assert "MARKER" not in out + err
    assert "connection refused" in err
    if "--debug" not in extra:
        assert err.count("\n") == 1 and "Traceback" not in err
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes()


# --------------------------------------------------------- a small OpenAI-style server


class FakeServer:
    """A stdlib HTTP server on 127.0.0.1 that lists one model and streams one reply,
    recording every request (path and Authorization header)."""

    def __init__(self, model: str = "gemma-remote", reply: tuple[str, ...] = ("Hel", "lo.")):
        self.requests: list[tuple[str, str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(("GET", self.path, self.headers.get("Authorization")))
                body = json.dumps(
                    {"object": "list", "data": [{"id": model, "max_model_len": 4096}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(size)
                owner.requests.append(("POST", self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for i, piece in enumerate(reply):
                    last = i == len(reply) - 1
                    chunk = {
                        "object": "text_completion",
                        "model": model,
                        "choices": [
                            {"index": 0, "text": piece, "finish_reason": "stop" if last else None}
                        ],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


LOAD_SCRIPT = """
import json, sys
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.models.loader import load_backend

settings = build_settings(base_url=sys.argv[1])
info, backend = load_backend(settings, print, "hello")
print(json.dumps({
    "llama_cpp": any(name.split(".")[0] == "llama_cpp" for name in sys.modules),
    "model": info.display_name, "path": info.path, "sha256": info.sha256,
    "context_length": info.context_length, "quantization": info.quantization,
    "host": info.host, "device": backend.info.device,
}))
backend.close()
"""


def test_loader_builds_the_remote_backend_without_llama_cpp(
    tmp_path, monkeypatch, fake_server
) -> None:
    write_config(tmp_path, monkeypatch, 'api_key_env = "GEMMA_TEST_KEY"\n')
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, fake_server.url],
        capture_output=True,
        timeout=60,
        env={**os.environ, "GEMMA_TEST_KEY": MARKER},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result == {
        "llama_cpp": False,
        "model": "gemma-remote",
        "path": fake_server.url,
        "sha256": None,
        "context_length": 4096,
        "quantization": None,
        "host": fake_server.url.split("/")[2],
        "device": "remote",
    }
    # One request, to the configured server only, with the key as a bearer token.
    # The model list, the tokenizer probes for <start_of_turn>, then llama-server's props
    # (this server has none of those): all on the base URL's server.
    assert fake_server.requests == [
        ("GET", "/v1/models", f"Bearer {MARKER}"),
        ("POST", "/extras/tokenize", f"Bearer {MARKER}"),
        ("POST", "/tokenize", f"Bearer {MARKER}"),
        ("POST", "/tokenize", f"Bearer {MARKER}"),
        ("GET", "/props", f"Bearer {MARKER}"),
    ]


def test_ask_over_http_keeps_the_key_out_of_history_and_json(
    tmp_path, monkeypatch, fake_server
) -> None:
    write_config(tmp_path, monkeypatch, 'api_key_env = "GEMMA_TEST_KEY"\n')
    proc = run_cli(
        "ask", "hi", "--base-url", fake_server.url, "--json", "--stats", "--debug",
        env={"GEMMA_TEST_KEY": MARKER}, timeout=60,
    )  # fmt: skip
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["text"] == "Hello." and result["model"] == "gemma-remote"
    assert result["api_path"] == "completions" and result["tokens_estimated"] is True
    assert result["device"] == "remote" and result["model_path"] == fake_server.url
    assert "path: completions" in err and "(estimated)" in err
    assert MARKER not in out + err
    databases = list((tmp_path / "data").rglob("*.db")) + list(
        (tmp_path / "data").rglob("*.sqlite*")
    )
    assert databases
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes()
    with sqlite3.connect(databases[0]) as db:
        rows = db.execute(
            "SELECT model, model_sha256 FROM messages WHERE role = 'model'"
        ).fetchall()
    assert rows == [("gemma-remote", None)]


# --------------------------------------------------------------- --stats and --json


def _done(estimated: bool, api_path: str | None) -> SimpleNamespace:
    stats = SimpleNamespace(
        prompt_tokens=12, evaluated_tokens=12, completion_tokens=5, ttft_s=0.1,
        tokens_per_s=20.0, total_s=0.4, dropped_turns=0, seed=1,
        estimated=estimated, api_path=api_path,
    )  # fmt: skip
    return SimpleNamespace(text="hi", stop_reason=StopReason.END_OF_TURN, stats=stats)


def test_stats_line_names_the_path_and_marks_estimates() -> None:
    info = RemoteModelInfo(model="gemma2:27b", base_url="http://box:11434/v1", context_length=8192)
    backend_info = SimpleNamespace(n_ctx=8192, device="remote", gpu_layers=0, threads=0)
    result = result_dict(_done(True, "chat"), info, backend_info)
    assert (result["api_path"], result["tokens_estimated"]) == ("chat", True)
    line = stats_line(result)
    assert "gemma2:27b (remote, ctx 8192)" in line and "path: chat" in line
    assert "prompt ~12 tok" in line and "generated ~5 tok (estimated)" in line
    assert line.endswith("remote http://box:11434/v1")
    exact = stats_line(result_dict(_done(False, "completions"), info, backend_info))
    assert "~" not in exact and "(estimated)" not in exact and "path: completions" in exact


def test_remote_exchange_skips_the_kv_state_cache() -> None:
    info = RemoteModelInfo(model="m", base_url="http://h/v1", context_length=None)
    exchange = Exchange(Settings(), record=SimpleNamespace(uuid="u"))
    # Neither touches the engine (a remote engine has no token template).
    assert exchange.restore_state(None, None, info) == 0  # type: ignore[arg-type]
    exchange.recorder = SimpleNamespace(conversation_id=1)  # type: ignore[assignment]
    assert exchange.save_state(None, None, info) is False  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the TUI


async def test_tui_shows_the_server_and_refuses_local_only_actions(fake_server) -> None:
    from gemma_chat.tui.app import GemmaChatApp

    app = GemmaChatApp(Settings(backend="openai", base_url=fake_server.url))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        host = fake_server.url.split("/")[2]
        status = str(app.query_one("#status-model").render())
        assert status == f"remote: {host} · gemma-remote"
        assert str(app.query_one("#status-device").render()) == "server"
        await wait_until(pilot, lambda: "~" in str(app.query_one("#status-meter").render()))
        await pilot.press("ctrl+g")
        await send(pilot, "/model")
        shown = notifications(app)
        assert any("does not apply to a remote backend" in n for n in shown)
        assert any("Models are chosen on the server" in n for n in shown)
        assert len(app.screen_stack) == 1  # no local model picker opened


async def test_tui_says_when_the_server_cannot_be_reached() -> None:
    from gemma_chat.tui.app import GemmaChatApp
    from gemma_chat.tui.widgets.chat_log import Notice

    url = f"http://127.0.0.1:{free_port()}/v1"
    app = GemmaChatApp(Settings(backend="openai", base_url=url))
    async with app.run_test() as pilot:
        status = app.query_one("#status-model")
        await wait_until(pilot, lambda: bool(app.query(Notice)))
        assert str(status.render()) == "not connected"
        text = str(app.query_one(Notice).render())
        assert "Could not use the server: cannot reach" in text and "connection refused" in text


@pytest.mark.parametrize("key", ["sk-SECRET123\nsecond-line", "sk-SECRET123-é", "sk SECRET123"])
def test_a_key_no_header_can_carry_is_refused_without_showing_it(fake_server, key) -> None:
    config = Path(os.environ["GEMMA_CHAT_CONFIG"])
    config.write_text(f'[remote.box]\nbase_url = "{fake_server.url}"\napi_key_env = "MYKEY"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gemma_chat", "ask", "--remote", "box", "hi"],
        input=b"",
        capture_output=True,
        timeout=60,
        env={**os.environ, "MYKEY": key},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "SECRET123" not in err and "SECRET123" not in proc.stdout.decode()
    assert fake_server.requests == []  # refused before any request


def test_a_failed_ask_leaves_no_lone_question(tmp_path) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1"
    proc = subprocess.run(
        [sys.executable, "-m", "gemma_chat", "ask", "--base-url", refused, "first"],
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1
    from gemma_chat.history.store import HistoryStore

    with HistoryStore() as store:
        assert all(store.messages(r.id) == [] for r in store.conversations())


async def test_a_server_model_id_is_never_markup() -> None:
    from gemma_chat.tui.app import GemmaChatApp

    server = FakeServer(model="gemma[/]odd[bold]")
    try:
        app = GemmaChatApp(Settings(backend="openai", base_url=server.url))
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.engine is not None)
            assert "gemma[/]odd[bold]" in str(app.query_one("#status-model").render())
    finally:
        server.close()
