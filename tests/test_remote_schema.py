"""Structured output over the openai backend (issue #15).

* llama-cpp-python's own server on loopback (fixture ``openai_server``, the demo model):
  it reads a schema only as a ``grammar``, so the schema goes as llama.cpp's GBNF of it,
  and the reply validates; ``--grammar`` goes as is.
* A small strict server that refuses any field it does not know with HTTP 400, as
  OpenAI's API does: one line says so, the request is sent again without the schema, and
  the reply is validated on the client alone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import run_cli

from gemma_chat.backend.remote_constraint import constraint_fields
from gemma_chat.history.store import HistoryStore
from gemma_chat.structured.constraint import OutputConstraint, parse_schema

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad", "neutral"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
    },
    "required": ["name", "age", "mood", "tags"],
    "additionalProperties": False,
}
QUESTION = "Describe Alice, a happy 30 year old who likes cats, as JSON."
CONSTRAINT_FIELDS = {"json_schema", "guided_json", "response_format", "grammar", "guided_grammar"}
"""What the strict server does not know (OpenAI's API answers such a field with a 400)."""


class StrictServer:
    """A loopback server that refuses the structured-output fields (HTTP 400) and answers
    other requests with ``reply``, streamed in two chunks."""

    def __init__(self, reply: str) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(200, {"data": [{"id": "strict", "max_model_len": 4096}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.requests.append(body)
                unknown = sorted(set(body) & CONSTRAINT_FIELDS)
                if unknown:
                    message = f"Unrecognized request argument supplied: {unknown[0]}"
                    self._json(400, {"error": {"message": message}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                half = len(reply) // 2
                for text, finish in ((reply[:half], None), (reply[half:], "stop")):
                    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

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

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def strict() -> Iterator[Any]:
    servers: list[StrictServer] = []

    def start(reply: str) -> StrictServer:
        servers.append(StrictServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _ask(url: str, *args: str):
    return run_cli("ask", "--backend", "openai", "--base-url", url, *args)


def test_each_server_gets_the_schema_in_its_own_form() -> None:
    constraint = parse_schema(json.dumps(PERSON))
    fields = constraint_fields(constraint, None)
    assert fields["json_schema"] == PERSON  # llama-server
    assert fields["guided_json"] == PERSON  # vLLM
    assert fields["response_format"]["json_schema"]["schema"] == PERSON  # OpenAI
    assert "grammar" not in fields  # llama-server refuses json_schema and grammar together
    gbnf = constraint_fields(constraint, "llama-cpp-python")
    assert set(gbnf) == {"grammar"} and "root ::=" in gbnf["grammar"]
    raw = constraint_fields(OutputConstraint(grammar='root ::= "a"'), None)
    assert raw == {"grammar": 'root ::= "a"', "guided_grammar": 'root ::= "a"'}


@pytest.mark.slow
def test_schema_over_llama_cpp_python_server(openai_server: str) -> None:
    proc = _ask(
        openai_server, "--model", "demo", "--temp", "0", "-n", "96", "--json",
        "--schema", json.dumps(PERSON), QUESTION,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""  # the server took the schema: nothing to say
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "end_of_turn"
    assert set(result["data"]) == {"name", "age", "mood", "tags"}


@pytest.mark.slow
def test_grammar_over_llama_cpp_python_server(openai_server: str, tmp_path) -> None:
    grammar = tmp_path / "yn.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    proc = _ask(
        openai_server, "--model", "demo", "--temp", "0", "--grammar", str(grammar), "Sky blue?"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() in ("yes\n", "no\n")


def test_a_refusing_server_is_one_line_and_the_reply_is_still_validated(strict) -> None:
    server = strict('{"name": "Ada", "age": 36}')
    proc = _ask(server.url, "--schema", "name, age int", "--json", "Who?")
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "the server refused the schema" in err, err
    assert "Unrecognized request argument supplied: guided_json" in err
    assert json.loads(proc.stdout)["data"] == {"name": "Ada", "age": 36}
    first, second = [r for r in server.requests if "max_tokens" in r]
    assert "json_schema" in first and "response_format" in first
    assert not set(second) & CONSTRAINT_FIELDS  # asked again without the schema


def test_an_unconstrained_reply_that_does_not_match_is_exit_1_and_kept(strict) -> None:
    server = strict("Ada is thirty-six.")
    proc = _ask(server.url, "--schema", "name, age int", "Who?")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 2 and "refused the schema" in lines[0]
    assert lines[1].startswith("gemma-chat: error: the reply is not valid JSON")
    assert proc.stdout.decode() == "Ada is thirty-six.\n"  # what arrived was shown
    with HistoryStore() as store:
        record = store.latest()
        assert record is not None
        reply = store.messages(record.id)[-1]
    assert reply.text == "Ada is thirty-six."
    assert reply.stop_reason == "schema_mismatch" and reply.partial
