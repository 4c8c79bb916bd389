"""Start and stop llama-cpp-python's own OpenAI-compatible server for the remote tests.

The server (``python -m llama_cpp.server``, from the ``llama-cpp-python[server]`` extra)
is a real HTTP server on a free loopback port. It serves several GGUFs at once, each
under an alias (the ``model`` field of a request), from a JSON config file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningServer", "free_port", "start_server", "stop_server"]


@dataclass
class RunningServer:
    """A started server process.

    Attributes:
        process: The server process (leader of its own process group).
        base_url: The OpenAI base URL, ``http://127.0.0.1:PORT/v1``.
        log_path: Where the server's stdout and stderr go.
    """

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        """Returns the server's output so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(
    path: Path,
    models: dict[str, Path],
    port: int,
    *,
    n_ctx: int = 2048,
    api_key: str | None = None,
) -> Path:
    """Writes a ``llama_cpp.server`` config file serving ``models`` by alias.

    Args:
        path: The JSON file to write.
        models: GGUF path by alias.
        port: The port to listen on (host is always 127.0.0.1).
        n_ctx: Context size of every model.
        api_key: When set, every request must carry ``Authorization: Bearer KEY``.

    Returns:
        ``path``.
    """
    config: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "api_key": api_key,
        "models": [
            {
                "model": str(gguf),
                "model_alias": alias,
                "n_ctx": n_ctx,
                # One per xdist worker (see conftest): spinning threads must not contend.
                "n_threads": int(os.environ.get("GEMMA_CHAT_THREADS") or 2),
                "n_threads_batch": int(os.environ.get("GEMMA_CHAT_THREADS") or 2),
                "verbose": False,
            }
            for alias, gguf in models.items()
        ],
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def _answers(base_url: str, api_key: str | None) -> bool:
    request = urllib.request.Request(f"{base_url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(
    models: dict[str, Path],
    workdir: Path,
    *,
    timeout_s: float = 60.0,
    n_ctx: int = 2048,
    api_key: str | None = None,
) -> RunningServer:
    """Starts the server and waits until ``GET /v1/models`` answers.

    Args:
        models: GGUF path by alias.
        workdir: Where the config and log files are written.
        timeout_s: How long to wait for the server to answer.
        n_ctx: Context size of every model.
        api_key: The key the server demands (``Authorization: Bearer KEY``), if any.

    Returns:
        The running server.

    Raises:
        RuntimeError: If the server exits or does not answer in time (the message
            includes its log).
    """
    port = free_port()
    config = write_config(workdir / "server.json", models, port, n_ctx=n_ctx, api_key=api_key)
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as one
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}/v1", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llama_cpp.server exited with {process.returncode}:\n{server.log()}"
            )
        if _answers(server.base_url, api_key):
            return server
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"llama_cpp.server did not answer in {timeout_s:.0f} s:\n{server.log()}")


def stop_server(server: RunningServer, *, grace_s: float = 10.0) -> None:
    """Terminates the server's process group, killing it after ``grace_s`` seconds."""
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
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=grace_s)
