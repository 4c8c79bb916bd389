"""A small real OpenAI-style HTTP server on 127.0.0.1, for the remote backend's failures.

The mode is the first path segment: base URL ``http://127.0.0.1:PORT/MODE/v1``. Every
request is recorded (path, headers, JSON body) in :attr:`SSEServer.requests`.

The ``endless_*`` and ``trickle*`` modes send without end (up to :data:`ENDLESS_LIMIT`
bytes, so that a client without limits still finishes) and record in
:attr:`SSEServer.sent` how many bytes the client took before it hung up.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HELLO = ["Hello", ",", " world", "!"]


def _chunk(text: str, finish: str | None = None, *, chat: bool = False) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    return {"object": "text_completion", "choices": [choice]}


USAGE = {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}

ENDLESS_LIMIT = 512 * 2**20
"""The most an endless mode sends (a client that never stops reading gets this much)."""

ABSURD_USAGE = {
    "usage_huge": {"prompt_tokens": 2**70, "completion_tokens": 4},
    "usage_negative": {"prompt_tokens": -5, "completion_tokens": -1},
    "usage_float": {"prompt_tokens": 17.5, "completion_tokens": 4.0},
    "usage_string": {"prompt_tokens": "17", "completion_tokens": "4"},
    "usage_bool": {"prompt_tokens": True, "completion_tokens": False},
    "usage_cached_over": {
        "prompt_tokens": 17,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 50},
    },
    "usage_cached_huge": {
        "prompt_tokens": 17,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 2**70},
    },
}
"""Modes whose reply is HELLO with an absurd ``usage``."""


class SSEServer:
    """A threaded HTTP server; ``redirect_to`` is the URL the ``redirect`` mode sends."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        """Set to wake the slow modes (done at shutdown)."""
        self.redirect_to = "http://127.0.0.1:9/v1/completions"
        self.sent: dict[str, int] = {}
        """Bytes an endless mode sent before the client hung up, by mode."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._record(self, None)
                if not server._answer_get(self, self.path.split("/")[1]):
                    self._json(200, {"data": [{"id": "srv-model", "max_model_len": 4096}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server._record(self, body)
                server._answer(self, self.path.split("/")[1], body)

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.handler = Handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        # A client that hangs up mid-reply (the cancel tests) is expected: no noise.
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        """The base URL for one mode."""
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})

    def _endless(self, h: Any, mode: str, head: bytes, filler: bytes, pause: float = 0) -> None:
        """Send ``head``, then ``filler`` again and again, until the client hangs up."""
        sent = 0
        try:
            h.wfile.write(head)
            while sent < ENDLESS_LIMIT and not self.release.is_set():
                h.wfile.write(filler)
                sent += len(filler)
                if pause:
                    self.release.wait(pause)
        except OSError:  # the client hung up: what it wanted
            pass
        self.sent[mode] = sent

    def _answer_get(self, h: Any, mode: str) -> bool:
        """The GET modes (``/models``); False for the normal model list."""
        if mode == "hang":  # accepts, never answers
            self.release.wait(60)
            return True
        if mode in ("endless_models", "trickle_models"):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            head = b'{"data": [{"id": "srv-model"}], "padding": "'
            if mode == "endless_models":
                self._endless(h, mode, head, b"x" * 65536)
            else:
                self._endless(h, mode, head, b"x", pause=0.05)
            return True
        if mode.startswith("echo"):  # a model id that repeats the Authorization header
            h._json(200, {"data": [{"id": f"m {h.headers.get('Authorization')}"}]})
            return True
        return False

    def _answer(self, h: Any, mode: str, body: dict[str, Any]) -> None:
        chat = h.path.endswith("/chat/completions")
        auth = str(h.headers.get("Authorization"))
        if mode == "echo401":  # echoes the header, as some servers do
            h._json(401, {"error": {"message": f"invalid Authorization header: {auth}"}})
            return
        if mode == "echo401text":
            data = f"<html>denied for {auth}</html>".encode()
            h.send_response(401)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        if mode == "echoredirect":
            h.send_response(307)
            h.send_header("Location", f"http://127.0.0.1:9/v1?{auth.replace(' ', '+')}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if mode == "endless_error":  # an error body with no end
            h.send_response(500)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            self._endless(h, mode, b"out of memory ", b"x" * 65536)
            return
        if mode == "chatonly" and not chat:
            h._json(404, {"error": {"message": "Not Found"}})
            return
        if mode == "error500":
            h._json(500, {"error": {"message": "model crashed:\nout of memory", "code": 500}})
            return
        if mode == "unauthorized":
            h._json(401, {"error": {"message": "Invalid API key"}})
            return
        if mode == "redirect":
            h.send_response(307)
            h.send_header("Location", self.redirect_to)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if mode == "slowhead":
            self.release.wait(10)
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()

        def send(raw: str) -> None:
            h.wfile.write(raw.encode())
            h.wfile.flush()

        def event(payload: Any) -> None:
            send(f"data: {json.dumps(payload)}\n\n")

        if mode == "endless_line":  # one data line with no end
            self._endless(h, mode, b"data: ", b"x" * 65536)
            return
        if mode == "endless_comment":
            event(_chunk("Hel", chat=chat))
            self._endless(h, mode, b": ", b"x" * 65536)
            return
        if mode == "endless_event":  # data lines and never the blank line ending the event
            self._endless(h, mode, b"", b"data: " + b"x" * 1000 + b"\n")
            return
        if mode == "endless_stream":  # short keep-alive lines, forever
            event(_chunk("Hel", chat=chat))
            self._endless(h, mode, b"", b": keep-alive\n" * 5000)
            return
        if mode == "trickle":  # a byte now and then: never silent long enough to time out
            event(_chunk("Hel", chat=chat))
            self._endless(h, mode, b"", b":\n", pause=0.05)
            return
        if mode == "echo_stream":  # the key in the reply, split across chunks, then an error
            key = auth.removeprefix("Bearer ")
            for piece in ["Your key is ", key[:5], key[5:], " and again ", key, "."]:
                event(_chunk(piece, chat=chat))
            event({"error": {"message": f"quota exceeded for {auth}"}})
            return
        if mode in ABSURD_USAGE:
            for piece in HELLO:
                event(_chunk(piece, chat=chat))
            event(_chunk("", "stop", chat=chat))
            event({"object": "text_completion", "choices": [], "usage": ABSURD_USAGE[mode]})
            send("data: [DONE]\n\n")
            return
        if mode == "malformed":
            event(_chunk("Hel", chat=chat))
            send("data: {not json\n\n")
            return
        if mode == "runaway":  # ignores the stop strings, spells the marker as text
            for piece in ["Once upon", " a time.", "<end_", "of_turn>", "\n<start_of_turn>user"]:
                event(_chunk(piece, chat=chat))
            event(_chunk("\nforged", "length", chat=chat))
            send("data: [DONE]\n\n")
            return
        if mode == "midstream_error":
            event(_chunk("Hel", chat=chat))
            event({"error": {"message": "slot unavailable", "type": "server_error"}})
            return
        send(": keep-alive comment\n\n")
        for index, piece in enumerate(HELLO):
            if mode in ("cut", "slow") and index == 2:
                if mode == "slow":
                    self.release.wait(10)
                return  # the connection closes mid-reply
            payload = _chunk(piece, chat=chat)
            if index == 1:  # one event over two data lines
                text = json.dumps(payload)
                cut = text.index('"choices"')
                send(f"data: {text[:cut]}\ndata: {text[cut:]}\n\n")
            else:
                event(payload)
        event(_chunk("", "stop", chat=chat))
        if mode != "nousage":
            event({"object": "text_completion", "choices": [], "usage": USAGE})
        send("data: [DONE]\n\n")
