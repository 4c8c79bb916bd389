"""HTTP I/O that always ends: sends the user can cancel, reads with size caps and a
deadline.

httpx's timeouts are per read: a server that keeps trickling bytes (one every few
seconds, forever) never trips them, and a body with no end grows memory until the
process dies. So every request to a server goes through here:

* :func:`send` waits for the response headers in a helper thread, so the caller returns
  the moment the user cancels (Ctrl+C) or the request's deadline passes, however long
  the server stays silent;
* a :class:`Watcher` shuts the response's socket down on cancel or at the deadline, so
  a blocked body read returns at once;
* :func:`capped` stops a body at a byte limit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from gemma_chat.backend.sse import RemoteError
from gemma_chat.units import format_bytes

POLL_S = 0.05
"""How often a wait checks the cancel event and the deadline."""

MAX_BODY_BYTES = 16 * 2**20
"""The largest JSON answer read (a model list, a reply that is not streamed): 16 MiB.
Public model lists with hundreds of models are a few MiB."""
MAX_ERROR_BYTES = 64 * 2**10
"""How much of an error answer is read: only its first line is ever shown."""
MAX_PROBE_BYTES = 2**20
"""The largest answer of a tokenizer or props probe (1 MiB)."""
MAX_STREAM_BYTES = 64 * 2**20
"""The most bytes one streamed reply may take (64 MiB): about 250 bytes a token, so far
more than any context a Gemma model has."""


class Watcher:
    """Shuts a response's socket down when ``cancel`` is set or ``deadline`` passes.

    A blocking read then returns at once. :attr:`fired` says why it did, so the reader
    can tell a user's cancel and a deadline from a server that hung up.
    """

    def __init__(
        self, response: Any, cancel: threading.Event | None, deadline: float | None
    ) -> None:
        self._response, self._cancel, self._deadline = response, cancel, deadline
        self.fired: str | None = None
        """None, ``"cancel"`` or ``"deadline"``."""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(POLL_S):
            reason = _reason(self._cancel, self._deadline)
            if reason is not None:
                self.fired = reason
                stream = self._response.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def check(self) -> str | None:
        """Why the request must end now (``"cancel"``/``"deadline"``), else None."""
        return self.fired or _reason(self._cancel, self._deadline)

    def stop(self) -> None:
        self._done.set()


def _reason(cancel: threading.Event | None, deadline: float | None) -> str | None:
    if cancel is not None and cancel.is_set():
        return "cancel"
    if deadline is not None and time.monotonic() >= deadline:
        return "deadline"
    return None


def send(
    client: Any, request: Any, cancel: threading.Event | None, deadline: float | None
) -> tuple[Any, str | None]:
    """Send ``request`` (streamed) and wait for its response headers.

    The request runs in a helper thread that the caller stops waiting for on cancel or
    at the deadline; a response that arrives after that is closed there.

    Returns:
        ``(response, None)``, or ``(None, "cancel")`` / ``(None, "deadline")``.

    Raises:
        Whatever the HTTP client raised.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def run() -> None:
        try:
            result = client.send(request, stream=True)
        except BaseException as error:  # handed to the caller
            with lock:
                box["error"] = error
        else:
            with lock:
                if box.get("abandoned"):
                    result.close()
                else:
                    box["response"] = result
        finally:
            done.set()

    threading.Thread(target=run, name="remote-send", daemon=True).start()
    while not done.wait(POLL_S):
        reason = _reason(cancel, deadline)
        if reason is not None:
            with lock:
                if "response" not in box and "error" not in box:
                    box["abandoned"] = True
                    return None, reason
            break
    if "error" in box:
        raise box["error"]
    return box["response"], None


def capped(chunks: Iterable[bytes], limit: int, what: str) -> Iterator[bytes]:
    """Pass ``chunks`` on until ``limit`` bytes have gone by.

    Raises:
        RemoteError: More than ``limit`` bytes arrived (``what`` names the source).
    """
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise RemoteError(f"{what} sent more than {format_bytes(limit)}; stopped reading")
        yield chunk
