"""The HTTP plumbing of the remote backend: one client bound to one server.

Only connection errors are retried (exponential backoff from 0.2 s, at most
``connect_retries`` times); HTTP errors, timeouts and failures mid-stream are not, since
the server has seen the request. No request leaves for any other host: environment
proxies are ignored (``trust_env`` off), redirects are not followed (one is an error), and
every request URL is checked against the base URL's scheme, host and port before it is
sent. Every wait is bounded (:mod:`gemma_chat.backend.bounded`) and ends at once when the
cancel event is set.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx

from gemma_chat.backend import bounded
from gemma_chat.backend.answers import AnswerReader
from gemma_chat.backend.sse import RemoteCancelled, RemoteError, one_line

BACKOFF_S = 0.2
"""The first retry delay; each further retry waits twice as long."""
PROBE_TIMEOUT_S = 5.0
"""The most a tokenizer or props probe may take (they are optional)."""
DEFAULT_PORTS = {"http": 80, "https": 443}


class Unsupported(Exception):
    """The server has no raw completions endpoint."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)


class RemoteClient:
    """Requests to one OpenAI-compatible server, and only to it.

    Attributes:
        base_url: The server's API root (no trailing slash).
        last_attempts: Connection attempts the last request needed.
    """

    def __init__(
        self,
        base_url: str,
        base: httpx.URL,
        *,
        api_key: str | None,
        timeout_s: float,
        reply_timeout_s: float,
        connect_retries: int,
    ) -> None:
        self._base = base
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.connect_retries = connect_retries
        self.last_attempts = 0
        headers = {"Accept": "text/event-stream, application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            trust_env=False,
            follow_redirects=False,
            event_hooks={"request": [self._check_origin]},
        )

    @property
    def answers(self) -> AnswerReader:
        """Reads bodies, errors and event streams within this client's limits."""
        return AnswerReader(self.base_url, self.timeout_s, self.reply_timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def probe(self, method: str, url: str, body: Any, cancel: threading.Event | None) -> Any:
        """An optional request (tokenizer, props): its JSON, or None on any failure.

        Raises:
            RemoteCancelled: ``cancel`` was set.
        """
        deadline = time.monotonic() + min(PROBE_TIMEOUT_S, self.timeout_s)
        try:
            request = self._client.build_request(method, url, json=body)
            response, stopped = bounded.send(self._client, request, cancel, deadline)
            if stopped == "cancel":
                raise RemoteCancelled(f"cancelled while waiting for {url}")
            if response is None:  # past the deadline: the probe is optional
                return None
            if response.status_code != 200:
                response.close()
                return None
            raw = self.answers.body(response, bounded.MAX_PROBE_BYTES, url, cancel, deadline)
            return json.loads(raw)
        except RemoteCancelled:
            raise
        except (RemoteError, httpx.HTTPError, ValueError, UnicodeError):
            return None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        cancel: threading.Event | None,
        deadline: float,
    ) -> httpx.Response | None:
        """Send one request, retrying connection errors; return the open response, or
        None when ``cancel`` was set before the server answered.

        Raises:
            RemoteError: No answer, a redirect, or an HTTP error.
            Unsupported: ``completions`` is refused (the caller falls back to chat).
        """
        response = self._send(method, path, body, cancel, deadline)
        if response is None:
            return None
        base = self.base_url
        if 300 <= response.status_code < 400:
            location = response.headers.get("location", "?")
            response.close()
            raise RemoteError(
                f"{base} redirected to {one_line(location, 200)}; gemma-chat does not follow "
                "redirects (set the base URL to the final address)"
            )
        if response.status_code >= 400:
            message = self.answers.error_text(response, cancel, deadline)
            if path == "completions" and _refuses_completions(response.status_code, message):
                raise Unsupported
            error = RemoteError(f"{base} answered HTTP {response.status_code}: {message}")
            error.status = response.status_code  # type: ignore[attr-defined]
            raise error
        return response

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        cancel: threading.Event | None,
        deadline: float,
    ) -> httpx.Response | None:
        """:meth:`request`'s sending, with the retries of connection errors."""
        base = self.base_url
        attempts = self.connect_retries + 1
        for attempt in range(attempts):
            self.last_attempts = attempt + 1
            try:
                request = self._client.build_request(method, f"{base}/{path}", json=body)
                response, stopped = bounded.send(self._client, request, cancel, deadline)
                if stopped == "cancel":
                    return None
                if stopped == "deadline":
                    raise RemoteError(self.answers.too_slow(path))
                return response
            except httpx.ConnectTimeout:
                raise RemoteError(f"cannot reach {base}: connection timed out") from None
            except httpx.ConnectError as error:
                if _is_dns_failure(error):
                    host = self._base.host
                    raise RemoteError(f"cannot reach {base}: unknown host {host!r}") from None
                if attempt + 1 == attempts:
                    reason = "connection refused" if _is_refused(error) else one_line(str(error))
                    raise RemoteError(
                        f"cannot reach {base}: {reason} ({attempts} attempts)"
                    ) from None
                delay = BACKOFF_S * 2**attempt
                if cancel is not None:
                    if cancel.wait(delay):
                        return None
                else:
                    threading.Event().wait(delay)
            except httpx.TimeoutException:
                raise RemoteError(f"{base} did not answer within {self.timeout_s:g} s") from None
            except (httpx.HTTPError, ValueError, UnicodeError) as error:
                # The library's text can quote request headers, which carry the API key.
                kind = type(error).__name__
                raise RemoteError(f"request to {base} failed ({kind})") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _check_origin(self, request: httpx.Request) -> None:
        if _origin(request.url) != _origin(self._base):
            raise RemoteError(
                f"refusing a request to {request.url.scheme}://{request.url.host}: "
                f"gemma-chat only talks to {self.base_url}"
            )


def _refuses_completions(status: int, message: str) -> bool:
    if status in (404, 405, 501):
        return True
    lowered = message.lower()
    refused = any(w in lowered for w in ("not supported", "unsupported", "does not support"))
    return status == 400 and refused and ("completion" in lowered or "prompt" in lowered)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_dns_failure(error: BaseException) -> bool:
    return any(isinstance(e, socket.gaierror) for e in _chain(error)) or (
        "name or service not known" in str(error).lower()
    )


def _is_refused(error: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) for e in _chain(error)) or (
        "refused" in str(error).lower()
    )
