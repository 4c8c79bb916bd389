"""The openai backend end to end against a real server: llama-cpp-python's own
OpenAI-compatible server (``python -m llama_cpp.server``) on a loopback port, serving the
demo model as ``demo`` and the tiny Gemma 2 models ``runaway``, ``marker`` and ``new_turn``
(fixture ``openai_server``).

The CLI runs in a subprocess; the TUI runs under Pilot in-process. Over HTTP the server
renders control tokens as empty text and parses them in text prompts, so these tests show
that the reply still ends exactly at the model's turn.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stories
from conftest import run_cli
from openai_server import free_port, start_server, stop_server
from tui_support import send, settle, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore

pytestmark = pytest.mark.slow

STORY = "Tell me a story"


def remote(url: str, *args: str) -> tuple[str, ...]:
    """``ask`` on the openai backend at ``url``."""
    return ("ask", "--backend", "openai", "--base-url", url, *args)


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The stdout of a successful run whose stderr is clean."""
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return proc.stdout.decode()


def one_line_error(proc: subprocess.CompletedProcess[bytes], *texts: str) -> str:
    """Checks that the run failed with exactly one ``gemma-chat: ...`` line on stderr."""
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert "Traceback" not in err
    for text in texts:
        assert text in err, err
    return err


# ------------------------------------------------------------------- the CLI


def test_runaway_reply_stops_at_the_turn_end_over_http(openai_server: str) -> None:
    out = ok(run_cli(*remote(openai_server, "--model", "runaway", STORY)))
    assert out == stories.RUNAWAY_REPLY + "\n"
    assert "Tell more" not in out


def test_json_reports_the_stop_and_the_api_path(openai_server: str) -> None:
    result = json.loads(ok(run_cli(*remote(openai_server, "--model", "runaway", STORY, "--json"))))
    assert result["text"] == stories.RUNAWAY_REPLY
    assert result["stop_reason"] == "end_of_turn"
    # llama_cpp.server's chat endpoint answers these GGUFs with empty replies: only the
    # text completions path gives the reply.
    assert result["api_path"] == "completions"
    assert result["model"] == "runaway"
    assert result["model_path"] == openai_server
    assert result["architecture"] == "remote" and result["device"] == "remote"
    assert result["completion_tokens"] > 0


def test_a_marker_spelled_as_text_is_stopped_over_http(openai_server: str) -> None:
    # Without the stop strings the server would stream "<end_of_turn>\n<start_of_turn>
    # user\n Hi Hi ..." as plain text (seen).
    out = ok(run_cli(*remote(openai_server, "--model", "marker", "Hi", "--plain")))
    assert out == stories.MARKER_AS_TEXT_REPLY + "\n"


def test_a_new_turn_control_token_does_not_leak_over_http(openai_server: str) -> None:
    # The server renders control tokens it generates as empty text, so the model's
    # <start_of_turn> never reaches the client: " Sure!" + "user\n Next" arrives (seen),
    # whatever stop strings were sent. The invented turn must still not be shown.
    result = json.loads(ok(run_cli(*remote(openai_server, "--model", "new_turn", "Hi", "--json"))))
    assert result["text"].startswith(stories.NEW_TURN_REPLY)
    assert "user" not in result["text"] and "Next" not in result["text"]


def test_demo_model_answers_with_stats(openai_server: str) -> None:
    args = remote(openai_server, "--model", "demo", "Why is the sky blue?", "-n", "16")
    proc = run_cli(*args, "--seed", "3", "--stats")
    assert ok(proc).strip()
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stats: demo"), lines
    assert "path: completions" in lines[0] and "remote" in lines[0]


def test_the_first_server_model_is_the_default(openai_server: str) -> None:
    result = json.loads(ok(run_cli(*remote(openai_server, "Hi", "-n", "4", "--json"))))
    assert result["model"] == "demo"  # first in GET /v1/models


def test_seed_reproduces_the_reply_over_http(openai_server: str) -> None:
    args = remote(openai_server, "--model", "demo", "Name a fruit.", "-n", "12", "--temp", "0.9")
    runs = [json.loads(ok(run_cli(*args, "--seed", "7", "--json"))) for _ in range(2)]
    assert runs[0]["text"] == runs[1]["text"] and runs[0]["seed"] == 7


def test_the_history_saves_the_remote_exchange(openai_server: str) -> None:
    result = json.loads(ok(run_cli(*remote(openai_server, "--model", "runaway", STORY, "--json"))))
    conversation_id = result["conversation_id"]
    assert conversation_id is not None
    with HistoryStore() as store:
        messages = store.messages(conversation_id)
    assert [m.role for m in messages] == ["user", "model"]
    assert messages[0].text == STORY
    reply = messages[1]
    assert reply.text == stories.RUNAWAY_REPLY and reply.stop_reason == "end_of_turn"
    assert reply.model == "runaway"
    assert not reply.partial


def test_an_unreachable_server_is_one_line(openai_server: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    one_line_error(run_cli(*remote(nobody, "--model", "runaway", STORY), timeout=120), nobody)


def test_a_model_the_server_does_not_have_is_one_line(openai_server: str) -> None:
    # llama_cpp.server answers any unknown name with whatever model it has loaded (seen),
    # so only a check against GET /v1/models catches the typo.
    one_line_error(
        run_cli(*remote(openai_server, "--model", "no-such-model", STORY)), "no-such-model"
    )


def test_a_profile_with_an_api_key_from_the_environment(
    tiny_models, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = "s3cret-test-key"
    server = start_server(
        {"runaway": tiny_models["runaway"].path}, tmp_path_factory.mktemp("keyed"), api_key=key
    )
    try:
        Path(os.environ["GEMMA_CHAT_CONFIG"]).write_text(
            f'[remote.box]\nbase_url = "{server.base_url}"\napi_key_env = "BOX_KEY"\n'
            'model = "runaway"\n'
        )
        out = ok(run_cli("ask", "--remote", "box", STORY, env={"BOX_KEY": key}))
        assert out == stories.RUNAWAY_REPLY + "\n"
        for env in ({"BOX_KEY": "wrong"}, {}):
            clean = {k: v for k, v in os.environ.items() if k != "BOX_KEY"}
            proc = subprocess.run(
                [sys.executable, "-m", "gemma_chat", "ask", "--remote", "box", STORY],
                input=b"",
                capture_output=True,
                timeout=120,
                env={**clean, **env},
            )
            err = one_line_error(proc)
            assert key not in err and proc.stdout == b""
    finally:
        stop_server(server)


def start_long_remote(url: str, question: str) -> subprocess.Popen[bytes]:
    """A long plain-text reply from the demo model on the server at ``url``."""
    args = remote(url, "--model", "demo", question, "--plain", "--no-repeat-guard")
    return subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", *args, "-n", "3000", "--seed", "5"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def saved_reply() -> tuple[str, object]:
    """The only conversation's user text and reply."""
    with HistoryStore() as store:
        (record,) = store.conversations()
        user, reply = store.messages(record.id)
    return user.text, reply


def test_ctrl_c_over_http_keeps_the_partial_reply(openai_server: str) -> None:
    proc = start_long_remote(openai_server, "Count to a thousand")
    assert proc.stdout is not None
    assert proc.stdout.read(1)  # the reply has started
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    user, reply = saved_reply()
    assert user == "Count to a thousand"
    assert reply.partial and reply.stop_reason == "cancelled" and reply.text.strip()
    # The server stopped generating when the client went away: it answers at once.
    started = time.monotonic()
    ok(run_cli(*remote(openai_server, "--model", "runaway", STORY, "--no-save")))
    assert time.monotonic() - started < 30


def test_a_server_dying_mid_reply_keeps_the_partial_text(
    demo_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = start_server({"demo": demo_path}, tmp_path_factory.mktemp("dying"))
    try:
        proc = start_long_remote(server.base_url, "Count to a thousand")
        assert proc.stdout is not None
        # Unbuffered: communicate() reads the pipe's fd directly, so bytes a buffered
        # read(1) had pulled ahead would be lost from `shown` (seen on a loaded machine,
        # where the reply is only a word or two when the server dies).
        first = os.read(proc.stdout.fileno(), 1)
        assert first  # the reply has started
        time.sleep(0.3)
    finally:
        stop_server(server, grace_s=0.5)
    out, err = proc.communicate(timeout=120)
    shown = (first + out).decode()
    error = err.decode()
    # A truncated answer must not look like a complete one to a script or a user.
    assert proc.returncode not in (0, 130), error
    assert "Traceback" not in error
    assert error.startswith("gemma-chat: ") and error.count("\n") == 1, error
    _, reply = saved_reply()
    assert reply.stop_reason == "failed" and reply.partial
    assert reply.text.strip() and reply.text.strip() in shown


# ------------------------------------------------------------------- the TUI


async def test_the_tui_chats_over_http(openai_server: str) -> None:
    from gemma_chat.tui.app import GemmaChatApp
    from gemma_chat.tui.widgets.chat_log import ModelReply

    app = GemmaChatApp(Settings(backend="openai", base_url=openai_server, model="runaway"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, STORY)
        await wait_until(
            pilot,
            lambda: (
                not app.generating and any(t.role is Role.MODEL for t in app.conversation.turns)
            ),
            timeout=60,
        )
        await settle(pilot)
        assert app.query_one(ModelReply).text == stories.RUNAWAY_REPLY
        assert app.conversation.turns[-1].stop_reason is StopReason.END_OF_TURN
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "Once upon a time." in screen
        for leaked in ("Tell more", "end_of_turn", "start_of_turn"):
            assert leaked not in screen
