"""Start and stop llama.cpp's own llama-server (the real binary) for the remote tests.

The binary is built by ``.ci/llama_server.sh`` from the llama.cpp that the installed
llama-cpp-python vendors, and cached under
``~/.cache/gemma-chat/llama-server/<version>/llama-server``; ``.ci/run`` exports its path
as ``GEMMA_CHAT_LLAMA_SERVER``.

* ``GEMMA_CHAT_LLAMA_SERVER`` set: the binary must run; a missing or failing one FAILS
  the tests (CI must never skip them silently).
* Unset: the cached binary is used when there is one, else the tests are skipped with a
  reason saying how to build it.

Each server serves one GGUF on a free 127.0.0.1 port, with one slot and the full-size
sliding-window cache (``--swa-full``, as llama-cpp-python keeps it), so the KV cache is
reused across turns as it is locally.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai_server import free_port

__all__ = ["ENV", "LlamaServer", "cached_binary", "server_binary", "start", "stop"]

ENV = "GEMMA_CHAT_LLAMA_SERVER"


def cached_binary() -> Path | None:
    """The binary ``.ci/llama_server.sh`` caches for the installed llama-cpp-python."""
    version = importlib.metadata.version("llama_cpp_python")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "gemma-chat" / "llama-server" / version / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def server_binary() -> Path:
    """The llama-server binary to test against: fails when ``GEMMA_CHAT_LLAMA_SERVER``
    names no runnable file, skips when it is unset and nothing is cached."""
    named = os.environ.get(ENV)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{ENV}={named} is not an executable file", pytrace=False)
        return path
    cached = cached_binary()
    if cached is None:
        pytest.skip(f"no llama-server binary: run `bash .ci/llama_server.sh` (or set {ENV})")
    return cached


@dataclass
class LlamaServer:
    """A running llama-server.

    Attributes:
        process: The server process (leader of its own process group).
        root: ``http://127.0.0.1:PORT`` (its native API).
        log_path: Its stdout and stderr.
    """

    process: subprocess.Popen[bytes]
    root: str
    log_path: Path

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root}/v1"

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def post(self, path: str, body: dict) -> dict:
        """POST JSON to the native API; the JSON answer."""
        request = urllib.request.Request(
            f"{self.root}/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _healthy(root: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    binary: Path,
    model: Path,
    workdir: Path,
    *,
    n_ctx: int = 512,
    swa_full: bool = True,
    timeout_s: float = 60.0,
) -> LlamaServer:
    """Start llama-server on ``model`` and wait until ``/health`` answers 200.

    Fails the test (not a skip) when the binary exits or does not answer in time.
    """
    port = free_port()
    threads = os.environ.get("GEMMA_CHAT_THREADS") or "2"  # one per xdist worker: see conftest
    command = [
        str(binary),
        *("-m", str(model), "--host", "127.0.0.1", "--port", str(port)),
        *("-c", str(n_ctx), "-np", "1", "-t", threads, "-tb", threads, "--no-webui"),
        *(("--swa-full",) if swa_full else ()),
    ]
    log_path = workdir / f"llama-server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as one
        )
    server = LlamaServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"llama-server exited with {process.returncode}:\n{server.log()}", pytrace=False
            )
        if _healthy(server.root):
            return server
        time.sleep(0.1)
    stop(server)
    pytest.fail(f"llama-server did not answer in {timeout_s:.0f} s:\n{server.log()}", pytrace=False)


def stop(server: LlamaServer, *, grace_s: float = 10.0) -> None:
    """Terminate the server's process group, killing it after ``grace_s`` seconds."""
    process = server.process
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
