"""A tiny stand-in for the Hugging Face Hub on a loopback port, for ``pull`` tests.

It answers the few endpoints huggingface_hub uses for a download, the way the Hub does
(headers checked against huggingface_hub 2.4's ``get_hf_file_metadata`` and
``hf_raise_for_status``):

* ``HEAD/GET /{org}/{name}/resolve/{revision}/{path}``: ``X-Repo-Commit``,
  ``X-Linked-Etag`` (the sha256 of an LFS file), ``X-Linked-Size``; GET honours
  ``Range: bytes=N-`` with a 206;
* ``GET /api/models/{org}/{name}[/revision/{revision}]?blobs=True``: the model info
  with its files (``siblings``, each with its LFS sha256);
* errors carry ``X-Error-Code`` (``RepoNotFound``, ``EntryNotFound``, ``GatedRepo``).

Tests can make it cut a download short, stall in the middle of one, refuse range
requests, or serve bytes that do not match the published sha256; every request is
recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    """One repository: its files, and whether it is gated."""

    files: dict[str, bytes]
    gated: bool = False
    commit: str = COMMIT
    served: dict[str, bytes] = field(default_factory=dict)
    """Bytes to send instead of the real ones (the published sha256 stays the real one)."""


@dataclass
class Behaviour:
    """How the next downloads misbehave."""

    cut_after: int | None = None
    """Send only this many bytes of a full GET, then drop the connection."""
    refuse_ranges: bool = False
    """Answer range requests with 503."""
    stall_after: int | None = None
    """Send only this many bytes of a full GET, then hold the connection open (until
    the server stops)."""


class FakeHub:
    """The server; use as a context manager, then point HF_ENDPOINT at ``url``."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.repos = repos
        self.behaviour = Behaviour()
        self.requests: list[tuple[str, str, str | None]] = []
        self.stopping = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def ranges(self) -> list[str]:
        """The Range headers of the file downloads so far."""
        return [r for method, path, r in self.requests if method == "GET" and r]

    def handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(req.path).path)
        self.requests.append(("HEAD" if head else "GET", path, req.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) in (4, 6):
            self.info(req, f"{parts[2]}/{parts[3]}")
        elif len(parts) >= 5 and parts[2] == "resolve":
            self.resolve(req, f"{parts[0]}/{parts[1]}", "/".join(parts[4:]), head)
        else:
            self.error(req, 404, "RepoNotFound")

    def info(self, req: BaseHTTPRequestHandler, name: str) -> None:
        repo = self.repos.get(name)
        if repo is None:
            self.error(req, 404, "RepoNotFound")
            return
        siblings = [
            {
                "rfilename": path,
                "size": len(data),
                "blobId": hashlib.sha1(data).hexdigest(),
                "lfs": {"sha256": _sha256(data), "size": len(data), "pointerSize": 134},
            }
            for path, data in repo.files.items()
        ]
        info = {"id": name, "sha": repo.commit, "private": False, "siblings": siblings}
        body = json.dumps(info).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def resolve(self, req: BaseHTTPRequestHandler, name: str, path: str, head: bool) -> None:
        repo = self.repos.get(name)
        if repo is None:
            self.error(req, 404, "RepoNotFound")
            return
        if repo.gated:
            self.error(req, 403, "GatedRepo")
            return
        if path not in repo.files:
            self.error(req, 404, "EntryNotFound", commit=repo.commit)
            return
        real = repo.files[path]
        data = repo.served.get(path, real)
        start = _range_start(req.headers.get("Range"))
        if start and self.behaviour.refuse_ranges and not head:
            self.error(req, 503, "")
            return
        status = 206 if start else 200
        body = data[start:]
        req.send_response(status)
        req.send_header("X-Repo-Commit", repo.commit)
        req.send_header("X-Linked-Etag", f'"{_sha256(real)}"')
        req.send_header("X-Linked-Size", str(len(real)))
        req.send_header("ETag", f'"{_sha256(real)}"')
        req.send_header("Accept-Ranges", "bytes")
        req.send_header("Content-Length", str(len(body)))
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.end_headers()
        if head:
            return
        stall = self.behaviour.stall_after
        if stall is not None and not start:
            req.wfile.write(body[:stall])
            req.wfile.flush()
            self.stopping.wait(60)
            req.close_connection = True
            return
        cut = self.behaviour.cut_after
        if cut is not None and not start:
            req.wfile.write(body[:cut])
            req.wfile.flush()
            req.close_connection = True
            return
        req.wfile.write(body)

    def error(self, req: BaseHTTPRequestHandler, status: int, code: str, commit: str = "") -> None:
        body = b'{"error": "fake hub error"}'
        req.send_response(status)
        if code:
            req.send_header("X-Error-Code", code)
        if commit:
            req.send_header("X-Repo-Commit", commit)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header[len("bytes=") :].split("-", 1)[0] or 0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
