"""Loading a model: resolve, inspect, size the context, plan the offload, load.

Shared by the CLI and the TUI. Diagnostics go through ``notify`` (stderr in the CLI, a
notification in the TUI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_chat.context import default_ctx, round_ctx
from gemma_chat.errors import ContextError, ModelError
from gemma_chat.models import ModelInfo, inspect_model, resolve_model
from gemma_chat.settings import Settings

if TYPE_CHECKING:
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.hardware import Gpu
    from gemma_chat.planner import MemoryPlan

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
    from gemma_chat.backend.local import LlamaBackend

    plan = offload_for(settings, info, n_ctx, notify)
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


def memory_plan(
    settings: Settings, path: Path, n_ctx: int, *, supported: bool, gpus: list[Gpu]
) -> MemoryPlan:
    """Plan a model's memory at ``n_ctx`` the way gemma-chat would load it here.

    Args:
        settings: The settings (GPU switch and layers, flash attention).
        path: The GGUF file (its metadata is read in a child process, cached).
        n_ctx: The context size.
        supported: Whether the llama.cpp build can offload to a GPU.
        gpus: The GPUs found (see :func:`gemma_chat.hardware.gpus`).

    Raises:
        ModelError: The metadata cannot be read, or lacks what the planner needs.
    """
    from gemma_chat import hardware
    from gemma_chat.gguf_meta import read_gguf_meta
    from gemma_chat.model_shape import ModelShape, ShapeError
    from gemma_chat.planner import plan_memory

    try:
        shape = ModelShape.from_meta(read_gguf_meta(path))
    except ShapeError as exc:
        raise ModelError(f"cannot plan the memory of {path.name}: {exc}") from None
    on_gpu = supported and settings.gpu is not False and bool(gpus)
    name = None
    if on_gpu:
        name = gpus[0].name if len(gpus) == 1 else f"{len(gpus)} GPUs"
    return plan_memory(
        shape,
        n_ctx,
        free_ram=hardware.system_memory().available,
        free_vram=hardware.free_vram(gpus) if on_gpu else None,
        gpu_layers=settings.gpu_layers if on_gpu else 0,
        gpu_name=name,
        flash_attn=settings.flash_attn,
    )


def offload_for(
    settings: Settings,
    info: ModelInfo,
    n_ctx: int,
    notify: Callable[[str], None],
    *,
    supported: bool | None = None,
    gpus: list[Gpu] | None = None,
) -> OffloadPlan:
    """Decide the GPU offload; with ``gpu_layers = "auto"`` the memory planner picks the
    layers that fit in the free VRAM.

    Args:
        settings: The settings.
        info: The inspected model.
        n_ctx: The context size it will be loaded with.
        notify: Where warnings go.
        supported: Whether the build can offload (None: ask llama.cpp). Tests inject it.
        gpus: The GPUs and their free memory (None: detect them). Tests inject them.
    """
    from gemma_chat.backend.offload import plan_offload

    if supported is None:
        from gemma_chat.backend.local import gpu_offload_supported

        supported = gpu_offload_supported()
    auto_layers = None
    # On a CPU build "auto" is simply 0: no metadata read, no hardware probe, no noise.
    if settings.gpu_layers == "auto" and supported and settings.gpu is not False:
        if gpus is None:
            from gemma_chat import hardware

            gpus = hardware.gpus(gpu_build=True)
        if gpus:  # else llama.cpp knows no more than we do: let it offload everything
            try:
                plan = memory_plan(settings, Path(info.path), n_ctx, supported=True, gpus=gpus)
            except ModelError as exc:
                notify(f"warning: {exc}; offloading every layer")
            else:
                auto_layers = plan.gpu_layers
                if not plan.fits_ram:
                    notify(f"warning: {plan.verdict}")
    return plan_offload(settings.gpu, settings.gpu_layers, supported, auto_layers)
