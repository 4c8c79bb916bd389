"""What a server says about itself: the serving context (llama-server's ``/props``, a
model card), and where its own endpoints are."""

from __future__ import annotations

from typing import Any

from gemma_chat.chat.context import DEFAULT_MAX_CTX


def props_ctx(props: Any) -> int | None:
    """llama-server's serving context per slot (``GET /props``), if it has one."""
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and 0 < n_ctx < 2**31 else None


def card_ctx(card: dict[str, Any]) -> int | None:
    """The context a server's model card reports, if any."""
    if isinstance(card.get("max_model_len"), int):  # vLLM: the serving context
        return card["max_model_len"]
    meta = card.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):
        return min(meta["n_ctx_train"], DEFAULT_MAX_CTX)  # llama-server: trained context
    return None


def server_root(base: Any) -> str | None:
    """The server's root URL, for its tokenizer and props endpoints, when the base URL
    (an ``httpx.URL``) is the plain ``/v1`` of a server (not a path behind a gateway,
    where the root may be another service: the key is never sent there)."""
    path = base.path.rstrip("/")
    if path not in ("", "/v1"):
        return None
    return f"{base.scheme}://{base.netloc.decode()}"
