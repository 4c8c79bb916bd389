"""llama.cpp's own llama-server, through its native API: token ids in, token ids out.

llama-server's OpenAI endpoints take text and stream text, and a control token the model
generates arrives as no text at all. Its native ``POST /completion`` does better: the
prompt may be a list of token ids (so gemma-chat's own template, with user text tokenized
as plain text, reaches the model exactly, and the prompt matches the ids the server holds
in its KV cache from the last reply), and each streamed chunk carries the id of the token
it holds (``tokens``), so the reply can end on the id of ``<start_of_turn>``,
``<end_of_turn>`` or ``<eos>`` as it does locally. The last chunk carries the exact
counts: ``tokens_evaluated`` (the prompt) and ``timings.prompt_n`` / ``timings.cache_n``
(evaluated now / taken from the cache).

The server is recognised by ``GET /props`` (``default_generation_settings`` and
``build_info``) together with a working ``POST /tokenize``. The tokenizer here
(:class:`ServerTokenizer`) asks the server's ``/tokenize`` and ``/detokenize`` and
remembers every answer, so a conversation's turns are tokenized once.

One quirk: llama-server holds back a token that ends in an incomplete UTF-8 character
and never streams it; the chunk that completes the character carries the whole text but
only the last id. ``tokens_predicted`` says how many were held back; their ids are
recovered by tokenizing the completed text (:meth:`ServerTokenizer.held_ids`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from gemma_chat.backend.remote_constraint import Refusals, refuses_constraint
from gemma_chat.backend.remote_http import RemoteClient
from gemma_chat.backend.sse import RemoteError, one_line, payload_message
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.chat.tokenizer import END_OF_TURN
from gemma_chat.config.settings import Sampling
from gemma_chat.errors import ModelError
from gemma_chat.structured.constraint import OutputConstraint

Probe = Callable[[str, str, Any], Any]
"""``probe(method, path, body)``: the JSON answer of a request to the server's root, or
None when it failed."""

MAX_CACHED = 65536
"""The most tokenizer answers remembered (they are small; a long chat needs a few
hundred)."""


def is_llama_server(props: Any) -> bool:
    """Whether ``GET /props`` answered as llama-server does."""
    return (
        isinstance(props, dict)
        and isinstance(props.get("default_generation_settings"), dict)
        and isinstance(props.get("build_info"), str)
    )


def _ids(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in value):
        return None
    return value


class ServerTokenizer:
    """The model's vocabulary as llama-server's ``/tokenize`` and ``/detokenize`` tell it
    (the :class:`~gemma_chat.chat.tokenizer.Tokenizer` protocol).

    Every method raises RemoteError when the server does not answer properly; the
    constructor raises ModelError when the vocabulary has no ``<bos>`` or ``<eos>``.
    """

    def __init__(self, probe: Probe, where: str) -> None:
        self._probe, self._where = probe, where
        self._tokens: dict[tuple[str, bool], list[int]] = {}
        self._texts: dict[int, str] = {}
        bos, eos = self.control_id("<bos>"), self.control_id("<eos>")
        if bos is None or eos is None:  # ids are looked up, never assumed
            raise ModelError("not a Gemma vocabulary: no <bos> or <eos> control token")
        self.bos_id, self.eos_id = bos, eos
        self._end_of_turn = self.control_id(END_OF_TURN)

    def tokenize(self, text: str) -> list[int]:
        """Plain text (``parse_special: false``): a typed marker stays text."""
        return list(self._tokenize(text, special=False))

    def control_id(self, text: str) -> int | None:
        """The id of the control token spelled ``text``: one token with specials parsed,
        and not one token as plain text."""
        special = self._tokenize(text, special=True)
        if len(special) != 1:
            return None
        return special[0] if self._tokenize(text, special=False) != special else None

    def token_text(self, token: int) -> str:
        """The token as the server renders it (control tokens spelled out)."""
        return self.detokenize([token])

    def piece(self, token: int) -> bytes:
        """The token's text as bytes (control tokens give b""; a lone byte token, which
        the server renders as U+FFFD, gives that)."""
        return b"" if self.is_control(token) else self.token_text(token).encode()

    def is_control(self, token: int) -> bool:
        """Whether the token is a control token (its text is one control token)."""
        text = self.token_text(token)
        return bool(text) and self.control_id(text) == token

    def is_end_of_generation(self, token: int) -> bool:
        """``<eos>`` and ``<end_of_turn>`` (the server stops by itself on any other)."""
        return token in (self.eos_id, self._end_of_turn)

    def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens`` (control tokens spelled out)."""
        if len(tokens) == 1 and tokens[0] in self._texts:
            return self._texts[tokens[0]]
        answer = self._probe("POST", "detokenize", {"tokens": tokens})
        text = answer.get("content") if isinstance(answer, dict) else None
        if not isinstance(text, str):
            raise RemoteError(f"{self._where}/detokenize did not answer")
        if len(tokens) == 1 and len(self._texts) < MAX_CACHED:
            self._texts[tokens[0]] = text
        return text

    def held_ids(self, text: str, last: int, held: int) -> list[int] | None:
        """The ids of ``held`` tokens the server held back before ``last`` (their bytes
        and ``last``'s make ``text``), or None when tokenizing ``text`` does not end with
        exactly them."""
        ids = self._tokenize(text, special=False)
        if len(ids) < held + 1 or ids[-1] != last:
            return None
        return list(ids[-held - 1 : -1])

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        key = (text, special)
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        body = {"content": text, "add_special": False, "parse_special": special}
        answer = self._probe("POST", "tokenize", body)
        ids = _ids(answer.get("tokens")) if isinstance(answer, dict) else None
        if ids is None:
            raise RemoteError(f"{self._where}/tokenize did not answer with token ids")
        if len(self._tokens) < MAX_CACHED:
            self._tokens[key] = ids
        return ids


@dataclass(frozen=True)
class TokenChunk:
    """One chunk of llama-server's ``/completion`` stream.

    Attributes:
        text: The text it adds (a held-back character's bytes included).
        tokens: The ids it carries (one, or none on the last chunk).
        predicted: Tokens generated so far (``tokens_predicted``), held ones included.
        finish_reason: ``stop_type`` on the last chunk (``eos``, ``limit``, ``word``).
        prompt_tokens: The prompt's tokens (``tokens_evaluated``), on the last chunk.
        evaluated: Prompt tokens evaluated for this reply (``timings.prompt_n``).
        cached: Prompt tokens taken from the KV cache (``timings.cache_n``).
    """

    text: str
    tokens: tuple[int, ...] = ()
    predicted: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    evaluated: int | None = None
    cached: int | None = None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < 2**31 else None


def parse_token_chunk(payload: Any, base: str) -> TokenChunk:
    """One ``/completion`` stream event, checked (the server is untrusted).

    Raises:
        RemoteError: An error event, or not a completion chunk.
    """
    if not isinstance(payload, dict):
        raise RemoteError(f"malformed SSE from {base}: not a JSON object")
    if "error" in payload:
        message = payload_message(payload) or "unknown error"
        raise RemoteError(f"{base} reported an error mid-reply: {one_line(message)}")
    text = payload.get("content", "")
    tokens = _ids(payload.get("tokens", []))
    if not isinstance(text, str) or tokens is None:
        raise RemoteError(f"malformed SSE from {base}: not a /completion chunk")
    finish = None
    if payload.get("stop") is True:
        stop_type = payload.get("stop_type")
        finish = stop_type if isinstance(stop_type, str) and stop_type else "stop"
    timings = payload.get("timings")
    timings = timings if isinstance(timings, dict) else {}
    return TokenChunk(
        text,
        tuple(tokens),
        _count(payload.get("tokens_predicted")),
        finish,
        _count(payload.get("tokens_evaluated")),
        _count(timings.get("prompt_n")),
        _count(timings.get("cache_n")),
    )


def completion_body(
    prompt: list[int], sampling: Sampling, seed: int, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``/completion`` request: the prompt as ids, streamed, with each token's id.

    No stop strings: the reply loop ends the turn on the ids and on a marker spelled as
    text, so the server's text and ids always match. ``cache_prompt`` lets the server
    evaluate only what its cache does not hold.
    """
    return {
        "prompt": prompt,
        "n_predict": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repeat_penalty,
        "seed": seed,
        "stream": True,
        "return_tokens": True,
        # The counts on every chunk: a reply that ends on <start_of_turn> closes the
        # stream before the server's last chunk.
        "timings_per_token": True,
        "cache_prompt": True,
        **(fields or {}),
    }


def native_constraint(constraint: OutputConstraint) -> dict[str, Any]:
    """A constraint as ``/completion`` reads it: ``json_schema`` or ``grammar``."""
    if constraint.schema is not None:
        return {"json_schema": constraint.schema}
    return {"grammar": constraint.grammar or ""}


class LlamaServerAPI:
    """llama-server's native endpoints at the server's root (same origin as the base
    URL, same key, same limits).

    Attributes:
        tokenizer: The server's vocabulary.
        template: The Gemma template over it.
        refusals: The schemas and grammars the server refused, and why.
    """

    def __init__(self, client: RemoteClient, root: str) -> None:
        self._http, self.root = client, root
        self.refusals = Refusals()
        self.tokenizer = ServerTokenizer(self._probe, root)
        self.template = GemmaTemplate(self.tokenizer)

    @classmethod
    def connect(
        cls,
        root: str,
        *,
        api_key: str | None,
        timeout_s: float,
        reply_timeout_s: float,
        connect_retries: int,
    ) -> LlamaServerAPI | None:
        """The native API of the llama-server at ``root`` (its ``/props`` said so), or
        None when its tokenizer does not answer or the model is not a Gemma chat model."""
        client = RemoteClient(
            root,
            httpx.URL(root),
            api_key=api_key,
            timeout_s=timeout_s,
            reply_timeout_s=reply_timeout_s,
            connect_retries=connect_retries,
        )
        try:
            return cls(client, root)
        except (RemoteError, ModelError):
            client.close()
            return None
        except BaseException:
            client.close()
            raise

    def _probe(self, method: str, path: str, body: Any) -> Any:
        return self._http.probe(method, f"{self.root}/{path}", body, None)

    def stream(
        self,
        prompt: list[int],
        *,
        sampling: Sampling,
        seed: int,
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[TokenChunk]:
        """Stream a reply to the prompt ids: one chunk per token.

        A constraint the server refuses is dropped, as on the text path.

        Raises:
            RemoteError: Any failure, before or during the stream.
        """
        fields = {}
        if constraint is not None and self.refusals.refused(constraint) is None:
            fields = native_constraint(constraint)
        deadline = time.monotonic() + self._http.reply_timeout_s
        body = completion_body(prompt, sampling, seed)
        try:
            request = {**body, **fields}
            response = self._http.request("POST", "completion", request, cancel, deadline)
        except RemoteError as error:
            if constraint is None or not refuses_constraint(error, fields):
                raise
            self.refusals.note(constraint, str(error))
            response = self._http.request("POST", "completion", body, cancel, deadline)
        if response is None:  # cancelled before the server answered
            return
        yield from self._http.answers.events(response, cancel, deadline, parse=parse_token_chunk)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
