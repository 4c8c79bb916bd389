"""A misbehaving server cannot grow memory, hang gemma-chat, crash it with its numbers, or
make it show the API key (issue 10, items 5, 8, 9 and 10).

Every case runs against a real loopback server (``sse_server.py``) that sends without
end, trickles, answers never, echoes the key, or reports absurd token counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from sse_server import ABSURD_USAGE, HELLO, SSEServer
from tui_support import notifications, send, wait_until

from gemma_chat.backend import bounded
from gemma_chat.backend.redact import REDACTED, Redactor
from gemma_chat.backend.remote import OpenAIBackend, RemoteError
from gemma_chat.backend.sse import MAX_LINE_BYTES, RemoteCancelled, sse_data, sse_lines
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.chat.template_text import STOP_STRINGS
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.config.settings import Sampling, Settings
from gemma_chat.errors import UsageError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.history.store import HistoryStore

SAMPLING = Sampling(temperature=0.0, seed=7, max_tokens=32)
KEY = "sk-LIMITS-5e1d0c-never-show-me"
"""The API key of the redaction tests: it must not appear in anything shown."""


@pytest.fixture(scope="module")
def server() -> Iterator[SSEServer]:
    srv = SSEServer()
    yield srv
    srv.close()


def backend(server: SSEServer, mode: str, **kwargs: Any) -> OpenAIBackend:
    kwargs.setdefault("timeout_s", 5.0)
    return OpenAIBackend(server.url(mode), model="m", n_ctx=2048, **kwargs)


def collect(b: OpenAIBackend, cancel: threading.Event | None = None) -> list:
    return list(
        b.stream_text(
            "p", messages=[], sampling=SAMPLING, seed=1, stop=list(STOP_STRINGS), cancel=cancel
        )
    )


def ask(b: OpenAIBackend, text: str = "Hi") -> ReplyDone:
    conversation = Conversation()
    conversation.add_user(text)
    deltas, done = [], None
    for event in Engine(b, SAMPLING).stream(conversation):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            done = event
    assert isinstance(done, ReplyDone)
    assert "".join(deltas) == done.text
    return done


def sent_by(server: SSEServer, mode: str) -> int:
    """How many bytes an endless mode sent before the client hung up."""
    deadline = time.monotonic() + 10
    while mode not in server.sent and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.sent[mode]


def one_line_error(proc: subprocess.CompletedProcess[bytes], code: int = 1) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert "Traceback" not in err
    return err


def write_config(text: str) -> None:
    Path(os.environ["GEMMA_CHAT_CONFIG"]).write_text(text, encoding="utf-8")


# ----------------------------------------------------------------- bounded reads (10.5)


def test_an_endless_sse_line_is_cut_at_the_line_cap(server: SSEServer) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"sent an SSE line longer than 1024 KiB") as info:
        collect(backend(server, "endless_line"))
    assert "\n" not in str(info.value) and server.url("endless_line") in str(info.value)
    assert time.monotonic() - started < 10
    # The client stopped reading right after the cap (plus what the sockets buffer).
    assert sent_by(server, "endless_line") < 16 * MAX_LINE_BYTES


def test_an_endless_comment_line_keeps_the_text_so_far(server: SSEServer) -> None:
    done = ask(backend(server, "endless_comment"))
    assert done.text == "Hel" and done.stop_reason is StopReason.FAILED
    assert "SSE line longer than 1024 KiB" in (done.error or "")
    assert sent_by(server, "endless_comment") < 16 * MAX_LINE_BYTES


def test_an_event_that_never_ends_is_cut_at_the_event_cap(server: SSEServer) -> None:
    with pytest.raises(RemoteError, match=r"sent an SSE event larger than 1024 KiB"):
        collect(backend(server, "endless_event"))
    assert sent_by(server, "endless_event") < 16 * MAX_LINE_BYTES


def test_a_stream_of_keep_alives_is_cut_at_the_stream_cap(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounded, "MAX_STREAM_BYTES", 2 * 2**20)  # 64 MiB takes longer
    done = ask(backend(server, "endless_stream"))
    assert done.text == "Hel" and done.stop_reason is StopReason.FAILED
    assert "sent more than 2 MiB" in (done.error or "")
    assert sent_by(server, "endless_stream") < 16 * 2**20


def test_a_trickling_reply_ends_at_the_reply_timeout(server: SSEServer) -> None:
    started = time.monotonic()
    done = ask(backend(server, "trickle", reply_timeout_s=1.0))
    elapsed = time.monotonic() - started
    assert done.text == "Hel" and done.stop_reason is StopReason.FAILED
    assert "took longer than 1 s (reply_timeout)" in (done.error or "")
    assert elapsed < 5  # the read timeout (5 s) never fires on a trickle


def test_an_endless_model_list_is_cut_at_the_body_cap(server: SSEServer) -> None:
    with pytest.raises(RemoteError, match=r"/models sent more than 16 MiB; stopped reading"):
        OpenAIBackend.connect(server.url("endless_models"), timeout_s=30)
    assert sent_by(server, "endless_models") < 2 * bounded.MAX_BODY_BYTES


def test_a_trickling_model_list_ends_at_the_timeout(server: SSEServer) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"/models did not finish answering within 1 s"):
        OpenAIBackend.connect(server.url("trickle_models"), timeout_s=1.0)
    assert time.monotonic() - started < 5


def test_an_endless_error_body_is_read_only_in_part(server: SSEServer) -> None:
    with pytest.raises(RemoteError) as info:
        collect(backend(server, "endless_error"))
    text = str(info.value)
    assert "answered HTTP 500: out of memory xxx" in text and len(text) < 300
    assert sent_by(server, "endless_error") < 16 * bounded.MAX_ERROR_BYTES + 16 * 2**20


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: a\r\n\r\ndata: b\n\ndata: c\r\r"],
        [b"data: a\r", b"\n\r", b"\ndata: b\n", b"\ndata: c\r", b"\r"],
        [bytes([c]) for c in b"data: a\r\n\r\ndata: b\n\ndata: c\r\r"],
    ],
)
def test_sse_lines_split_on_every_line_ending_across_chunks(pieces: list[bytes]) -> None:
    assert list(sse_data(sse_lines(pieces, "s"), "s")) == ["a", "b", "c"]


def test_sse_lines_never_split_a_character() -> None:
    text = "data: 日本語 🎉\n\n".encode()
    assert list(sse_data(sse_lines([bytes([b]) for b in text], "s"), "s")) == ["日本語 🎉"]


# ----------------------------------------------------------- the profile timeouts (10.5)


def test_timeouts_come_from_the_profile_then_the_top_level() -> None:
    write_config(
        'timeout = 30\nreply_timeout = 90\n[remote.box]\nbase_url = "http://h:1/v1"\n'
        'timeout = 5\nreply_timeout = 7.5\n[remote.other]\nbase_url = "http://h:2/v1"\n'
    )
    box = build_settings(remote="box")
    assert (box.timeout, box.reply_timeout) == (5, 7.5)
    other = build_settings(remote="other")
    assert (other.timeout, other.reply_timeout) == (30, 90)
    assert (Settings().timeout, Settings().reply_timeout) == (60, 600)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", '"soon"', "100000"])
def test_a_bad_timeout_is_a_usage_error(value: str) -> None:
    write_config(f'[remote.box]\nbase_url = "http://h:1/v1"\ntimeout = {value}\n')
    with pytest.raises(UsageError, match="timeout"):
        build_settings(remote="box")


def test_the_profile_timeout_reaches_the_server_check(server: SSEServer) -> None:
    write_config(f'[remote.slow]\nbase_url = "{server.url("trickle_models")}"\ntimeout = 1\n')
    started = time.monotonic()
    err = one_line_error(run_cli("ask", "--remote", "slow", "hi", timeout=60))
    assert time.monotonic() - started < 20
    assert "did not finish answering within 1 s" in err


def test_the_reply_timeout_keeps_the_partial_reply(server: SSEServer) -> None:
    write_config(f'[remote.slow]\nbase_url = "{server.url("trickle")}"\nreply_timeout = 1\n')
    proc = run_cli("ask", "--remote", "slow", "hi", "--plain", timeout=60)
    err = one_line_error(proc)
    assert "took longer than 1 s (reply_timeout)" in err and "partial reply is kept" in err
    assert proc.stdout.decode().startswith("Hel")
    with HistoryStore() as store:
        (record,) = store.conversations()
        question, reply = store.messages(record.id)
    assert question.text == "hi"
    assert reply.text == "Hel" and reply.partial and reply.stop_reason == "failed"


# ------------------------------------------------------------------ absurd usage (10.8)


@pytest.mark.parametrize("mode", [m for m in ABSURD_USAGE if not m.startswith("usage_cached")])
def test_absurd_usage_is_ignored(server: SSEServer, mode: str) -> None:
    done = ask(backend(server, mode))
    assert done.text == "".join(HELLO) and done.stop_reason is StopReason.END_OF_TURN
    stats = done.stats
    assert stats.estimated is True  # gemma-chat's own estimates, not the server's numbers
    assert stats.completion_tokens == len(HELLO)
    assert 0 < stats.prompt_tokens < 100 and stats.evaluated_tokens == stats.prompt_tokens


@pytest.mark.parametrize(
    ("mode", "evaluated"), [("usage_cached_over", 0), ("usage_cached_huge", 17)]
)
def test_an_absurd_cached_count_never_makes_a_negative_count(
    server: SSEServer, mode: str, evaluated: int
) -> None:
    stats = ask(backend(server, mode)).stats
    assert (stats.prompt_tokens, stats.completion_tokens, stats.estimated) == (17, 4, False)
    assert stats.evaluated_tokens == evaluated  # clamped to the prompt, or ignored


def test_usage_of_2_to_the_70_is_saved_as_an_answer(server: SSEServer) -> None:
    proc = run_cli("ask", "--base-url", server.url("usage_huge"), "hi", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["text"] == "".join(HELLO) and result["tokens_estimated"] is True
    with HistoryStore() as store:
        (record,) = store.conversations()
        question, reply = store.messages(record.id)
    assert question.text == "hi" and reply.text == "".join(HELLO)  # no unanswered question
    assert reply.prompt_tokens == result["prompt_tokens"] < 100


# ---------------------------------------------------------------- the API key (10.9)


def test_the_redactor_matches_every_spelling_of_the_key() -> None:
    key = 'sk-a/b&c"d'
    r = Redactor(key)
    for spelling in (key, 'sk-a\\/b&c\\"d', "sk-a/b&amp;c&quot;d", "sk-a%2Fb%26c%22d"):
        assert r.text(f"x {spelling} y") == f"x {REDACTED} y"
    assert Redactor(None).text("x") == "x" and Redactor("").text("x") == "x"


def test_the_stream_redactor_finds_a_key_split_at_every_point() -> None:
    text = f"a {KEY} b {KEY[:6]} c {KEY}"
    for cut in range(len(text) + 1):
        for second in (cut, min(len(text), cut + 3)):
            stream = Redactor(KEY).stream()
            pieces = [text[:cut], text[cut:second], text[second:]]
            out = "".join(stream.feed(p) for p in pieces) + stream.flush()
            assert out == f"a {REDACTED} b {KEY[:6]} c {REDACTED}", (cut, second)


@pytest.mark.parametrize("mode", ["echo401", "echo401text", "echoredirect"])
def test_an_error_that_echoes_the_key_is_redacted(server: SSEServer, mode: str) -> None:
    with pytest.raises(RemoteError) as info:
        collect(backend(server, mode, api_key=KEY))
    text = str(info.value)
    assert KEY not in text and REDACTED in text, text
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent


def test_a_reply_and_an_error_mid_reply_that_echo_the_key_are_redacted(
    server: SSEServer,
) -> None:
    done = ask(backend(server, "echo_stream", api_key=KEY))
    assert done.text == f"Your key is {REDACTED} and again {REDACTED}."
    assert done.stop_reason is StopReason.FAILED
    assert KEY not in (done.error or "") and "quota exceeded for Bearer [redacted]" in (
        done.error or ""
    )


def test_a_model_id_that_echoes_the_key_is_redacted(server: SSEServer) -> None:
    b = OpenAIBackend.connect(server.url("echo_models"), api_key=KEY)
    try:
        assert b.info.model == f"m Bearer {REDACTED}"
        assert b.model == f"m Bearer {KEY}"  # the server still gets its own id back
    finally:
        b.close()
    with pytest.raises(RemoteError) as info:
        OpenAIBackend.connect(server.url("echo_models"), api_key=KEY, model="nope")
    assert KEY not in str(info.value) and REDACTED in str(info.value)


def test_the_cli_never_prints_the_key(server: SSEServer) -> None:
    write_config(
        f'[remote.box]\nbase_url = "{server.url("echo401")}"\napi_key_env = "LIMITS_KEY"\n'
    )
    proc = run_cli("ask", "--remote", "box", "hi", env={"LIMITS_KEY": KEY})
    err = one_line_error(proc)
    assert KEY not in err and REDACTED in err and KEY not in proc.stdout.decode()


async def test_the_app_never_shows_the_key(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemma_chat.tui.app import GemmaChatApp
    from gemma_chat.tui.widgets.chat_log import Notice

    monkeypatch.setenv("LIMITS_KEY", KEY)
    settings = Settings(backend="openai", base_url=server.url("echo401"), api_key_env="LIMITS_KEY")
    app = GemmaChatApp(settings)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        failed = "The reply failed"
        await wait_until(pilot, lambda: any(failed in str(n.render()) for n in app.query(Notice)))
        notice = " ".join(str(n.render()) for n in app.query(Notice))
        assert "invalid Authorization header: Bearer [redacted]" in notice
        shown = notice + " ".join(notifications(app)) + app.export_screenshot()
        assert KEY not in shown


# ----------------------------------------------------------- Ctrl+C while waiting (10.10)


def test_cancel_stops_the_model_check_at_once(server: SSEServer) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RemoteCancelled) as info:
        OpenAIBackend.connect(server.url("hang"), timeout_s=30, cancel=cancel)
    assert time.monotonic() - started < 2 and info.value.exit_code == 130


class _HangingProbes:
    """A server at a plain ``/v1`` (so gemma-chat probes its tokenizer and props): the
    model list answers, every probe hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.probed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    data = json.dumps({"data": [{"id": "m"}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._hang()

            def do_POST(self) -> None:
                self._hang()

            def _hang(self) -> None:
                outer.probed.set()
                outer.release.wait(60)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def interrupt_ask(url: str, started: threading.Event) -> tuple[int, str, float]:
    """Run ``ask --base-url url``, Ctrl+C it once the server has the request; return the
    exit code, stderr and the seconds from the signal to the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "ask", "--base-url", url, "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        assert started.wait(60), "the request never arrived"
        time.sleep(0.2)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        return proc.returncode, err.decode(), time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_the_model_check_exits_at_once(server: SSEServer) -> None:
    arrived = threading.Event()
    before = len(server.requests)

    def watch() -> None:
        while not any(r["path"].startswith("/hang/") for r in server.requests[before:]):
            time.sleep(0.02)
        arrived.set()

    threading.Thread(target=watch, daemon=True).start()
    code, err, elapsed = interrupt_ask(server.url("hang"), arrived)
    assert code == 130, err
    assert elapsed < 3  # not the 60 s timeout
    assert err.count("\n") == 1 and err.startswith("gemma-chat: ") and "Traceback" not in err


def test_ctrl_c_during_a_probe_exits_at_once() -> None:
    probes = _HangingProbes()
    try:
        code, err, elapsed = interrupt_ask(probes.url, probes.probed)
    finally:
        probes.close()
    assert code == 130, err
    assert elapsed < 3  # not the probes' own 5 s limits, one after the other
    assert err.count("\n") == 1 and "Traceback" not in err
