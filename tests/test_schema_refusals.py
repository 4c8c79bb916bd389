"""When a server refuses a schema, and when an error is not a refusal (issue #15 review).

A loopback OpenAI-compatible server answers each constrained request with whatever
status the test scripts: only a 400/422 that names the constraint is a refusal (the
request goes again without it, and it is said once, in ``ask`` and in the app); a 429,
401 or a 400 about the context is the ordinary one-line error. A reply a server failure
cut off says that failure, also with a schema.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import run_cli
from tui_support import answered, notifications, send, settle, wait_until

from gemma_chat.backend.remote_constraint import refuses_constraint
from gemma_chat.backend.sse import RemoteError
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.tui.app import GemmaChatApp

CONSTRAINT_FIELDS = {"json_schema", "guided_json", "response_format", "grammar", "guided_grammar"}
REFUSAL = (400, "Unrecognized request argument supplied: guided_json")

Answer = Callable[[dict[str, Any]], "tuple[int, str] | None"]
"""What the server says to a constrained request: (status, message), or None to reply."""


class Server:
    """A loopback server: constrained requests get ``answer``'s error; the others (and
    constrained ones it lets through) get ``reply``, or a stream cut by malformed SSE
    when ``cut``."""

    def __init__(self, answer: Answer, reply: str, cut: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"data": [{"id": "fake", "max_model_len": 4096}]})
                else:
                    self._json(404, {"error": {"message": "no such endpoint"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if not self.path.startswith("/v1/"):
                    self._json(404, {"error": {"message": "no such endpoint"}})
                    return
                server.posts.append(body)
                error = answer(body) if set(body) & CONSTRAINT_FIELDS else None
                if error is not None:
                    self._json(error[0], {"error": {"message": error[1]}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                first = {"choices": [{"index": 0, "text": reply, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(first)}\n\n".encode())
                if cut:
                    self.wfile.write(b"data: {not json\n\n")
                    return
                last = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def constrained(self) -> list[bool]:
        """Whether each reply request carried the constraint."""
        return [bool(set(body) & CONSTRAINT_FIELDS) for body in self.posts]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(answer: Answer, reply: str = '{"name": "Ada"}', cut: bool = False) -> Server:
        servers.append(Server(answer, reply, cut))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _ask(url: str, *args: str):
    return run_cli("ask", "--backend", "openai", "--base-url", url, "--no-save", *args)


def _error(status: int, message: str) -> RemoteError:
    error = RemoteError(f"http://127.0.0.1:1/v1 answered HTTP {status}: {message}")
    error.status = status  # type: ignore[attr-defined]
    return error


def test_only_a_400_or_422_about_the_constraint_is_a_refusal() -> None:
    fields = {"json_schema": {}, "guided_json": {}, "response_format": {}}
    assert refuses_constraint(_error(*REFUSAL), fields)
    extra = "body.guided_json: Extra inputs are not permitted"
    assert refuses_constraint(_error(422, extra), fields)
    assert refuses_constraint(_error(400, "'response_format.type' must be 'json_object'"), fields)
    assert refuses_constraint(_error(400, "parameter not supported"), fields)
    for status, message in (
        (429, "rate limited: json_schema requests are limited"),
        (401, "invalid api key"),
        (404, "model 'x' not found"),
        (400, "the request exceeds the available context size"),
        (413, "request entity too large"),
    ):
        assert not refuses_constraint(_error(status, message), fields), (status, message)
    assert not refuses_constraint(_error(*REFUSAL), {})  # nothing was sent to refuse
    # The base URL is not the server's words: a "schema" in it proves nothing.
    inside = RemoteError("http://h/schema-api/v1 answered HTTP 400: context too long")
    inside.status = 400  # type: ignore[attr-defined]
    assert not refuses_constraint(inside, fields)


@pytest.mark.parametrize(
    ("status", "message"),
    [(429, "rate limited, retry later"), (400, "the request exceeds the available context size")],
)
def test_other_errors_are_not_blamed_on_the_schema(serve, status: int, message: str) -> None:
    server = serve(lambda body: (status, message))
    proc = _ask(server.url, "--schema", "name", "hi")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and f"answered HTTP {status}: {message}" in err, err
    assert "refused" not in err
    assert server.constrained == [True]  # not sent again without the schema


def test_a_refusal_is_retried_unconstrained_and_said(serve) -> None:
    server = serve(lambda body: REFUSAL)
    proc = _ask(server.url, "--schema", "name", "hi")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "the server refused the schema" in err and REFUSAL[1] in err
    assert server.constrained == [True, False]


def test_a_server_failure_mid_reply_says_its_cause_with_a_schema(serve) -> None:
    server = serve(lambda body: None, reply='{"name": "A', cut=True)
    proc = _ask(server.url, "--schema", "name", "--json", "hi")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and "malformed SSE" in err, err
    assert "before its JSON was complete" in err
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "failed" and "malformed SSE" in result["error"]


async def test_the_app_says_a_refusal_once_and_offers_a_new_schema_again(serve) -> None:
    server = serve(lambda body: REFUSAL)
    app = GemmaChatApp(Settings(backend="openai", base_url=server.url))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/schema name")
        await send(pilot, "Hello")
        await answered(pilot, 1)
        said = [n for n in notifications(app) if "refused the schema" in n]
        assert len(said) == 1 and REFUSAL[1] in said[0], notifications(app)
        await send(pilot, "Again")  # the same schema: not sent again, not said again
        await answered(pilot, 2)
        assert len([n for n in notifications(app) if "refused the schema" in n]) == 1
        assert server.constrained == [True, False, False]
        await send(pilot, "/schema age int")  # a new schema is offered to the server again
        await send(pilot, "And now?")
        await answered(pilot, 3)
        assert server.constrained == [True, False, False, True, False]
        assert len([n for n in notifications(app) if "refused the schema" in n]) == 2


async def test_the_app_is_not_told_of_a_refusal_for_a_rate_limit(serve) -> None:
    calls: list[int] = []

    def answer(body: dict[str, Any]) -> tuple[int, str] | None:
        calls.append(1)
        return (429, "rate limited, retry later") if len(calls) == 1 else None

    server = serve(answer)
    app = GemmaChatApp(Settings(backend="openai", base_url=server.url))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/schema name")
        await send(pilot, "Hello")
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        assert not [n for n in notifications(app) if "refused" in n]
        await send(pilot, "Hello")  # the failed question went back into the input
        await answered(pilot, 1)
        assert server.constrained == [True, True]  # still constrained after the 429


async def test_the_app_says_why_a_reply_under_a_schema_was_cut_off(serve) -> None:
    server = serve(lambda body: None, reply='{"name": "A', cut=True)
    app = GemmaChatApp(Settings(backend="openai", base_url=server.url))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/schema name")
        await send(pilot, "Hello")
        await answered(pilot, 1)
        assert app.conversation.turns[-1].text == '{"name": "A'  # kept, partial
        shown = notifications(app)
        assert any("cut off" in n and "malformed SSE" in n for n in shown), shown
        assert not any("cut off (failed)" in n for n in shown), shown


async def test_a_failed_reply_under_a_prompt_gives_back_what_was_typed(serve) -> None:
    server = serve(lambda body: (401, "invalid api key"))
    extract = SavedPrompt.model_validate({"template": "Extract: {input}", "schema": "name"})
    settings = Settings(backend="openai", base_url=server.url, prompts={"ex": extract})
    app = GemmaChatApp(settings)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/prompt ex")
        await send(pilot, "Ada is 36")
        await wait_until(pilot, lambda: not app.generating and not app.conversation.turns)
        await settle(pilot)
        assert app.prompt.text == "Ada is 36"  # not "Extract: Ada is 36"
        assert not [n for n in notifications(app) if "refused" in n]
        assert "Extract: Ada is 36" in server.posts[0]["prompt"]  # the template was sent
