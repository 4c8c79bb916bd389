"""A remote backend: an OpenAI-compatible server (llama-server, vLLM, Ollama) over HTTP.

The engine renders the Gemma prompt as text itself (``gemma_chat.chat.template_text``) and
this backend sends it to ``POST {base}/completions`` with explicit stop strings, so the
template and its injection safety stay gemma-chat's own. A server that refuses raw
completions (404/405/501, or a 400 saying completions or prompts are unsupported) gets
``POST {base}/chat/completions`` instead, once; :attr:`OpenAIBackend.api_path` remembers it.

Replies stream as server-sent events (:mod:`gemma_chat.backend.sse`). Every failure is a
one-line :class:`RemoteError` naming the base URL. The HTTP itself (retries, the one host
requests may go to, redirects refused) is :mod:`gemma_chat.backend.remote_http`'s.

Every request ends (:mod:`gemma_chat.backend.bounded`): the server may stay silent for
``timeout_s`` at most; a non-streamed answer must be complete within ``timeout_s`` and a
streamed reply within ``reply_timeout_s``, however steadily bytes trickle in; bodies,
SSE lines and whole streams have size caps; and the cancel event (Ctrl+C) ends any wait
at once, the model check and the probes included. Everything the server sends that is
shown (errors, model ids, the reply) has the API key redacted
(:mod:`gemma_chat.backend.redact`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx2 as httpx

from gemma_chat.backend import bounded
from gemma_chat.backend.base import BackendInfo
from gemma_chat.backend.llama_server import LlamaServerAPI, TokenChunk, is_llama_server
from gemma_chat.backend.redact import Redactor
from gemma_chat.backend.redacting import redacted_chunks, redacting_errors
from gemma_chat.backend.remote_constraint import Refusals, constraint_fields, refuses_constraint
from gemma_chat.backend.remote_http import DEFAULT_PORTS, RemoteClient, Unsupported
from gemma_chat.backend.server_cards import card_ctx, props_ctx, server_root
from gemma_chat.backend.sse import (
    RemoteCancelled,
    RemoteError,
    TextChunk,
    one_line,
)
from gemma_chat.chat.context import DEFAULT_MAX_CTX
from gemma_chat.config.settings import Sampling
from gemma_chat.structured.constraint import OutputConstraint


class OpenAIBackend:
    """A model served by an OpenAI-compatible server.

    Attributes:
        info: What the user is told (model = the server's model id, path = base URL).
        api_path: ``"completions"`` until the server refuses it, then ``"chat"``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        n_ctx: int | None = None,
        timeout_s: float = 60.0,
        reply_timeout_s: float = 600.0,
        connect_retries: int = 3,
        token_ids: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            self._base = httpx.URL(self.base_url)
        except Exception as error:
            raise RemoteError(f"not a valid base URL: {base_url!r} ({error})") from None
        if self._base.scheme not in DEFAULT_PORTS or not self._base.host:
            raise RemoteError(f"the base URL must be http:// or https://: {base_url!r}")
        self.model = model
        self.timeout_s = timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.connect_retries = connect_retries
        self.redactor = Redactor(api_key)
        self.api_path = "completions"
        self.turn_bias: dict[str, int] = {}
        """``logit_bias`` forbidding ``<start_of_turn>``, once its id is known."""
        self.server_kind: str | None = None
        """``llama-cpp-python`` when its own tokenizer endpoint answered (it takes a
        schema only as a ``grammar``), else None."""
        self.refusals = Refusals()
        """The schemas and grammars the server refused (see :meth:`refused`)."""
        self.token_ids = token_ids
        """Use llama-server's native token-id API when the server is llama-server."""
        self.llama_server: LlamaServerAPI | None = None
        """llama-server's native API (prompt and reply as token ids), once detected."""
        self._http = RemoteClient(
            self.base_url,
            self._base,
            api_key=api_key,
            timeout_s=timeout_s,
            reply_timeout_s=reply_timeout_s,
            connect_retries=connect_retries,
        )
        self.info = self._make_info(n_ctx)

    @classmethod
    def connect(
        cls, base_url: str, *, cancel: threading.Event | None = None, **kwargs: Any
    ) -> OpenAIBackend:
        """Create a backend and check the server: ``GET {base}/models``.

        The model defaults to the first id the server lists; the context to
        ``n_ctx``, else the server's ``max_model_len`` (vLLM) or trained context
        (llama-server's ``meta.n_ctx_train``, capped at 8192), else 8192.

        Args:
            base_url: The server's OpenAI API root.
            cancel: Set (Ctrl+C) to stop waiting for the server at once.
            **kwargs: As for the constructor.

        Raises:
            RemoteError: Unreachable, or the server lists no models.
            RemoteCancelled: ``cancel`` was set before the server had answered.
        """
        backend = cls(base_url, **kwargs)
        try:
            with redacting_errors(backend.redactor):
                backend._check_server(kwargs.get("n_ctx"), cancel)
        except BaseException:
            backend.close()
            raise
        return backend

    @property
    def is_remote(self) -> Literal[True]:
        """True: the model runs on the server (a text backend)."""
        return True

    @property
    def constraint_refused(self) -> str | None:
        """Why the server refused the last schema or grammar it refused; None while it
        takes them."""
        native = self.llama_server
        refused = native.refusals.last if native is not None else None
        return self.redactor.text(refused) if refused else self.refusals.last

    def refused(self, constraint: OutputConstraint) -> str | None:
        """Why the server refused ``constraint`` (then it is no longer sent, and the
        replies are validated on the client alone); None while it takes it."""
        native = self.llama_server
        refused = native.refusals.refused(constraint) if native is not None else None
        return self.redactor.text(refused) if refused else self.refusals.refused(constraint)

    @property
    def stop_method(self) -> str:
        """How a reply's end is found: ``token_id`` (llama-server reports each token's
        id) or ``stop_string`` (the text, with ``<start_of_turn>`` biased away)."""
        return "token_id" if self.llama_server is not None else "stop_string"

    @property
    def last_attempts(self) -> int:
        """Connection attempts the last request needed."""
        return self._http.last_attempts

    def _check_server(self, n_ctx: int | None, cancel: threading.Event | None) -> None:
        """:meth:`connect`'s checks: the model, the ``<start_of_turn>`` bias, the context."""
        models = self.models(cancel)
        ids = [str(m.get("id")) for m in models if m.get("id") is not None]
        if self.model is None:
            if not ids:
                raise RemoteError(f"{self.base_url} serves no models")
            self.model = ids[0]
        elif ids and self.model not in ids:
            # Servers such as llama-cpp-python's answer an unknown name with whatever
            # model they have loaded: a typo would silently talk to another model.
            raise RemoteError(
                f"{self.base_url} has no model {self.model!r} (it serves: {', '.join(ids)})"
            )
        self.turn_bias = self._start_of_turn_bias(cancel)
        root = server_root(self._base)
        props = self._http.probe("GET", f"{root}/props", None, cancel) if root else None
        if self.token_ids and root is not None and is_llama_server(props):
            http = self._http
            self.llama_server = LlamaServerAPI.connect(
                root,
                api_key=self.redactor.key or None,
                timeout_s=http.timeout_s,
                reply_timeout_s=http.reply_timeout_s,
                connect_retries=http.connect_retries,
            )
        if n_ctx is None:
            card = next((m for m in models if m.get("id") == self.model), {})
            n_ctx = props_ctx(props) or card_ctx(card)
        self.info = self._make_info(n_ctx)

    def _start_of_turn_bias(self, cancel: threading.Event | None = None) -> dict[str, int]:
        """Forbid the ``<start_of_turn>`` token, when the server can say its id.

        A server renders a control token the model generates as empty text, so a model
        that opens a new turn (``<start_of_turn>user ...``) without ending its own would
        show the invented turn as plain text, past every stop string. Biasing the token
        away (``logit_bias``, which llama.cpp's servers and vLLM accept) stops that at the
        source. The id comes from the server's tokenizer: llama-cpp-python's
        ``/extras/tokenize``, or ``/tokenize`` (llama-server, vLLM). Without one, the
        stop strings and the marker filter are the guard.
        """
        root = server_root(self._base)
        if root is None:
            return {}
        attempts = (
            ("extras/tokenize", {"input": "<start_of_turn>", "model": self.model}, "tokens"),
            ("tokenize", {"content": "<start_of_turn>", "parse_special": True}, "tokens"),
            (  # vLLM
                "tokenize",
                {"model": self.model, "prompt": "<start_of_turn>", "add_special_tokens": False},
                "tokens",
            ),
        )
        for path, body, key in attempts:
            payload = self._http.probe("POST", f"{root}/{path}", body, cancel)
            tokens = payload.get(key) if isinstance(payload, dict) else None
            # [<bos>,] <start_of_turn>: exactly one token besides a BOS.
            if isinstance(tokens, list) and 0 < len(tokens) <= 2 and isinstance(tokens[-1], int):
                if path == "extras/tokenize":
                    self.server_kind = "llama-cpp-python"
                return {str(tokens[-1]): -100}
        return {}

    def models(self, cancel: threading.Event | None = None) -> list[dict[str, Any]]:
        """The server's model list (``GET {base}/models``), complete within ``timeout_s``.

        Raises:
            RemoteError: No answer, an error, or not a model list.
            RemoteCancelled: ``cancel`` was set.
        """
        with redacting_errors(self.redactor):
            where = f"{self.base_url}/models"
            deadline = time.monotonic() + self.timeout_s
            response = self._http.request("GET", "models", None, cancel, deadline)
            if response is None:
                raise RemoteCancelled(f"cancelled while waiting for {where}")
            raw = self._http.answers.body(response, bounded.MAX_BODY_BYTES, where, cancel, deadline)
            try:
                payload = json.loads(raw)
            except (ValueError, UnicodeError) as error:
                reason = one_line(str(error), 80)
                raise RemoteError(f"{where} is not a model list: {reason}") from None
            data = payload.get("data", []) if isinstance(payload, dict) else []
            return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def stream_text(
        self,
        prompt: str,
        *,
        messages: list[dict[str, str]],
        sampling: Sampling,
        seed: int,
        stop: list[str],
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[TextChunk]:
        """Stream a reply: the text prompt on ``/completions``, else ``messages`` on chat.

        A ``constraint`` is sent in every form the known servers read (see
        :func:`~gemma_chat.backend.remote_constraint.constraint_fields`). A server that
        refuses it (:func:`~gemma_chat.backend.remote_constraint.refuses_constraint`) is
        asked again without it, once; :meth:`refused` then says why, and the caller
        validates the reply alone.

        Stops at once, without an error, when ``cancel`` is set. The whole reply must
        arrive within ``reply_timeout_s`` and :data:`bounded.MAX_STREAM_BYTES`.

        Raises:
            RemoteError: Any failure, before or during the stream.
        """
        fields: dict[str, Any] = {}
        if constraint is not None and self.refusals.refused(constraint) is None:
            fields = constraint_fields(constraint, self.server_kind)
        with redacting_errors(self.redactor):
            yield from redacted_chunks(
                self.redactor,
                self._stream(prompt, messages, sampling, seed, stop, cancel, fields, constraint),
            )

    def _stream(
        self,
        prompt: str,
        messages: list[dict[str, str]],
        sampling: Sampling,
        seed: int,
        stop: list[str],
        cancel: threading.Event | None,
        fields: dict[str, Any] | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[TextChunk]:
        body: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "seed": seed,
            "stop": stop,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if sampling.repeat_penalty != 1.0:
            body["repetition_penalty"] = sampling.repeat_penalty  # vLLM's name
        if self.model:
            body["model"] = self.model
        if self.turn_bias:
            body["logit_bias"] = self.turn_bias
        # vLLM drops special tokens from the text by default, which would hide a
        # generated <start_of_turn> from the stop strings and the marker filter.
        body["skip_special_tokens"] = False
        deadline = time.monotonic() + self.reply_timeout_s
        try:
            response = self._post(prompt, messages, {**body, **(fields or {})}, cancel, deadline)
        except RemoteError as error:
            if constraint is None or not refuses_constraint(error, fields or {}):
                raise
            # The server refused the schema or grammar: one line for the user, then the
            # same request without it; the reply is validated on the client either way.
            self.refusals.note(constraint, self.redactor.text(str(error)))
            response = self._post(prompt, messages, body, cancel, deadline)
        if response is None:  # cancelled before the server answered
            return
        yield from self._http.answers.events(response, cancel, deadline)

    def _post(
        self,
        prompt: str,
        messages: list[dict[str, str]],
        body: dict[str, Any],
        cancel: threading.Event | None,
        deadline: float,
    ) -> httpx.Response | None:
        """The reply request: ``/completions``, or chat once completions are refused."""
        response = None
        if self.api_path == "completions":
            try:
                response = self._http.request(
                    "POST", "completions", {**body, "prompt": prompt}, cancel, deadline
                )
            except Unsupported:
                self.api_path = "chat"
        if response is None and self.api_path == "chat":
            response = self._http.request(
                "POST", "chat/completions", {**body, "messages": messages}, cancel, deadline
            )
        return response

    def stream_tokens(
        self,
        prompt: list[int],
        *,
        sampling: Sampling,
        seed: int,
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[TokenChunk | TextChunk]:
        """Stream a reply to prompt ids through llama-server's native API (only when
        :attr:`llama_server` is set): one chunk per token, with its id.

        Raises:
            RemoteError: Any failure, before or during the stream.
        """
        native = self.llama_server
        assert native is not None, "not llama-server: use stream_text"
        chunks = native.stream(
            prompt, sampling=sampling, seed=seed, cancel=cancel, constraint=constraint
        )
        with redacting_errors(self.redactor):
            yield from redacted_chunks(self.redactor, chunks)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the connection pool."""
        if self.llama_server is not None:
            self.llama_server.close()
        self._http.close()

    # -- internals ---------------------------------------------------------------------

    def _make_info(self, n_ctx: int | None) -> BackendInfo:
        return BackendInfo(
            # The server's model id is shown: a server could have put the key in it.
            model=self.redactor.text(self.model) if self.model else "(server default)",
            path=self.base_url,
            architecture="remote",
            context_length=n_ctx,
            n_ctx=n_ctx or DEFAULT_MAX_CTX,
            device="remote",
            gpu_layers=0,
            threads=0,
        )
