"""Loading a model for a command: resolve, inspect, plan the offload, load.

Diagnostics go to stderr through ``notify``; stdout belongs to the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_chat.context import default_ctx, round_ctx
from gemma_chat.models import ModelInfo, inspect_model, resolve_model
from gemma_chat.settings import Settings

if TYPE_CHECKING:
    from gemma_chat.backend.local import LlamaBackend


def inspect_for(settings: Settings, notify: Callable[[str], None]) -> ModelInfo:
    """Resolve the model the settings name and read its metadata safely."""
    info = inspect_model(resolve_model(settings.model, notify))
    for warning in info.warnings():
        notify(f"warning: {warning}")
    return info


def load_backend(
    settings: Settings, notify: Callable[[str], None]
) -> tuple[ModelInfo, LlamaBackend]:
    """Inspect the model, then load it with the settings' context size and GPU plan."""
    info = inspect_for(settings, notify)
    # llama.cpp is imported only once a model is about to be loaded.
    from gemma_chat.backend.local import LlamaBackend, gpu_offload_supported
    from gemma_chat.backend.offload import plan_offload

    plan = plan_offload(settings.gpu, settings.gpu_layers, gpu_offload_supported())
    if plan.warning:
        notify(f"warning: {plan.warning}")
    n_ctx = round_ctx(settings.ctx) if settings.ctx else default_ctx(info.context_length)
    backend = LlamaBackend(
        Path(info.path),
        n_ctx=n_ctx,
        offload=plan,
        threads=settings.threads,
        architecture=info.architecture,
        context_length=info.context_length,
        flash_attn=settings.flash_attn,
        debug=settings.debug,
    )
    return info, backend
