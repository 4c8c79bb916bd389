"""Loading a model: resolve, inspect, size the context, plan the offload, load.

Shared by the CLI and the TUI. Diagnostics go through ``notify`` (stderr in the CLI, a
notification in the TUI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_chat.context import default_ctx, round_ctx
from gemma_chat.errors import ContextError
from gemma_chat.models import ModelInfo, inspect_model, resolve_model
from gemma_chat.settings import Settings

if TYPE_CHECKING:
    from gemma_chat.backend.local import LlamaBackend

MAX_BYTES_PER_TOKEN = 128
"""No Gemma token is this long, so text longer than n_ctx times this cannot fit."""


def inspect_for(settings: Settings, notify: Callable[[str], None]) -> ModelInfo:
    """Resolve the model the settings name and read its metadata safely."""
    info = inspect_model(resolve_model(settings.model, notify), flash_attn=settings.flash_attn)
    for warning in info.warnings():
        notify(f"warning: {warning}")
    return info


def context_size(settings: Settings, info: ModelInfo, notify: Callable[[str], None]) -> int:
    """The n_ctx to load with: ``--ctx`` rounded up to 256, or the model's default."""
    if settings.ctx is None:
        return default_ctx(info.context_length)
    n_ctx = round_ctx(settings.ctx)
    if info.context_length and n_ctx > info.context_length:
        notify(
            f"warning: --ctx {n_ctx} is larger than the {info.context_length} tokens "
            f"{info.display_name} was trained on; replies degrade past that"
        )
    return n_ctx


def check_input_size(text: str, n_ctx: int) -> None:
    """Refuse input that cannot possibly fit, before the slow model load and tokenizing.

    Raises:
        ContextError: The text is longer than any n_ctx tokens can be.
    """
    size = len(text.encode("utf-8"))
    if size > n_ctx * MAX_BYTES_PER_TOKEN:
        raise ContextError(
            f"the message is too long: {size} bytes cannot fit in a context of {n_ctx} "
            "tokens (try --ctx or a shorter input)"
        )


def load_backend(
    settings: Settings,
    notify: Callable[[str], None],
    message: str | None = None,
    *,
    keep_stderr: bool = False,
) -> tuple[ModelInfo, LlamaBackend]:
    """Inspect the model, then load it with the settings' context size and GPU plan.

    Args:
        settings: The settings.
        notify: Where diagnostics go.
        message: The user's message, checked against the context size before loading.
        keep_stderr: Do not point stdout/stderr at /dev/null while llama.cpp loads (a TUI
            drawing on the terminal from another thread must keep them).
    """
    info = inspect_for(settings, notify)
    n_ctx = context_size(settings, info, notify)
    if message is not None:
        check_input_size(message, n_ctx)
    # llama.cpp is imported only once a model is about to be loaded.
    from gemma_chat.backend.local import LlamaBackend, gpu_offload_supported
    from gemma_chat.backend.offload import plan_offload

    plan = plan_offload(settings.gpu, settings.gpu_layers, gpu_offload_supported())
    if plan.warning:
        notify(f"warning: {plan.warning}")
    backend = LlamaBackend(
        Path(info.path),
        n_ctx=n_ctx,
        offload=plan,
        threads=settings.threads,
        architecture=info.architecture,
        context_length=info.context_length,
        flash_attn=settings.flash_attn,
        debug=settings.debug,
        keep_stderr=keep_stderr,
    )
    return info, backend
