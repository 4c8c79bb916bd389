"""Loading a model: resolve, inspect, size the context, plan the offload, load; or, with
the openai backend, connect to the server that runs it.

Shared by the CLI and the TUI. Diagnostics go through ``notify`` (stderr in the CLI, a
notification in the TUI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gemma_chat.chat.context import CTX_STEP, default_ctx, round_ctx
from gemma_chat.config.remote import api_key
from gemma_chat.config.settings import Settings
from gemma_chat.errors import ContextError, ModelError, UsageError
from gemma_chat.models.kind import ModelKind, classify
from gemma_chat.models.resolve import ModelInfo, inspect_model, resolve_model

if TYPE_CHECKING:
    import threading

    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.planning.hardware import Gpu
    from gemma_chat.planning.planner import MemoryPlan

MAX_BYTES_PER_TOKEN = 128
"""No Gemma token is this long, so text longer than n_ctx times this cannot fit."""
MAX_CTX = 2**32 - CTX_STEP
"""The largest n_ctx llama.cpp can take: it is a uint32, so 4294967552 would wrap to 256."""


@dataclass(frozen=True)
class RemoteModelInfo:
    """What gemma-chat knows of a model that runs on a server (the remote counterpart of
    :class:`~gemma_chat.models.resolve.ModelInfo` for the CLI, the TUI and the history).

    Attributes:
        model: The model id on the server, recorded as the reply's model.
        base_url: The server's API root.
        context_length: The server's context size, if known.
    """

    model: str
    base_url: str
    context_length: int | None
    architecture: str = "remote"
    quantization: str | None = None
    sha256: str | None = None
    """Always None: the server's weights are unknown, so no KV state or token ids from
    another load are ever reused for them."""

    @property
    def display_name(self) -> str:
        """The model id on the server."""
        return self.model

    @property
    def path(self) -> str:
        """Where the model runs: the base URL."""
        return self.base_url

    @property
    def host(self) -> str:
        """The server's host (and port), for the status bar."""
        return urlsplit(self.base_url).netloc

    @property
    def kind(self) -> ModelKind:
        """Base or instruction-tuned, as far as the model's id on the server says."""
        return classify(names=(self.model,), metadata_read=False)

    def warnings(self) -> list[str]:
        """Nothing is known about the weights to warn about."""
        return []


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


def check_context(
    settings: Settings,
    info: ModelInfo,
    n_ctx: int,
    *,
    supported: bool | None = None,
    gpus: list[Gpu] | None = None,
) -> None:
    """Refuse a context size that cannot fit, before llama.cpp allocates anything.

    The memory planner sizes the context's own allocations, the KV cache and the compute
    buffers, at ``n_ctx``; when they alone exceed the free RAM plus the free VRAM, the
    context cannot fit and is refused, naming what it needs. The weights are left out
    of that sum on purpose: llama.cpp memory-maps them, so they are page cache the kernel
    can evict rather than memory that must fit (a model larger than RAM loads, slowly),
    and the default context of such a model is not refused either. A context larger
    than the model's trained context is allowed, with the warning
    :func:`context_size` gives, as llama.cpp allows it. Whatever the plan says, no
    value above :data:`MAX_CTX` is ever passed on, since llama.cpp's n_ctx would wrap.

    Args:
        settings: The settings (GPU switch and layers, flash attention).
        info: The inspected model.
        n_ctx: The context size asked for, rounded up to 256.
        supported: Whether the build can offload (None: ask llama.cpp). Tests inject it.
        gpus: The GPUs and their free memory (None: detect them). Tests inject them.

    Raises:
        UsageError: The context cannot fit, or is larger than llama.cpp can take.
    """
    from gemma_chat.units import format_bytes

    if supported is None:
        from gemma_chat.backend.local import gpu_offload_supported

        supported = gpu_offload_supported()
    on_gpu = supported and settings.gpu is not False
    if gpus is None:
        from gemma_chat.planning import hardware

        gpus = hardware.gpus(gpu_build=True) if on_gpu else []
    try:
        plan = memory_plan(settings, Path(info.path), n_ctx, supported=supported, gpus=gpus)
    except ModelError:
        plan = None  # a shape the planner cannot read: only the hard limit below applies
    # A GPU whose free memory is unknown could hold any amount: then nothing is refused.
    if plan is not None and not (on_gpu and gpus and plan.free_vram is None):
        needed = plan.kv_cache + plan.compute
        free = plan.free_ram + (plan.free_vram or 0)
        if needed > free:
            where = f"{format_bytes(plan.free_ram)} of free RAM"
            if plan.free_vram is not None:
                where += f" and {format_bytes(plan.free_vram)} of free VRAM"
            trained = f" (it was trained on {info.context_length})" if info.context_length else ""
            raise UsageError(
                f"a context of {n_ctx} tokens (--ctx) cannot fit: its KV cache and compute "
                f"buffers alone need {format_bytes(needed)}, and this machine has {where}; "
                f"use a smaller --ctx{trained}"
            )
    if n_ctx > MAX_CTX:
        raise UsageError(f"--ctx {n_ctx} is more than llama.cpp can take ({MAX_CTX} tokens)")


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
    cancel: threading.Event | None = None,
) -> tuple[ModelInfo, LlamaBackend] | tuple[RemoteModelInfo, Any]:
    """Inspect the model, then load it with the settings' context size and GPU plan; with
    ``backend = "openai"``, connect to the server instead (see :func:`connect_remote`).

    Args:
        settings: The settings.
        notify: Where diagnostics go.
        message: The user's message, checked against the context size before loading.
        keep_stderr: Do not point stdout/stderr at /dev/null while llama.cpp loads (a TUI
            drawing on the terminal from another thread must keep them).
        cancel: Set (Ctrl+C) to stop waiting for a remote server at once.
    """
    if settings.backend == "openai":
        return connect_remote(settings, message, cancel)
    info = inspect_for(settings, notify)
    if settings.ctx is not None:  # the default context is at most 8192: never absurd
        check_context(settings, info, round_ctx(settings.ctx))
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
    from gemma_chat.models.draft import attach_draft_model, speculative_mode

    try:
        backend.speculative = speculative_mode(settings)
        if backend.speculative == "draft":
            attach_draft_model(settings, backend, n_ctx, notify, _cpu_plan(settings))
    except BaseException:
        backend.close()
        raise
    return info, backend


def _cpu_plan(settings: Settings) -> Callable[[Path, int], MemoryPlan]:
    """The memory plan of a model loaded on the CPU (the draft model)."""
    return lambda path, n_ctx: memory_plan(settings, path, n_ctx, supported=False, gpus=[])


def connect_remote(
    settings: Settings, message: str | None = None, cancel: threading.Event | None = None
) -> tuple[RemoteModelInfo, Any]:
    """Build the OpenAI-compatible backend the settings name. Nothing local is touched:
    no model file is resolved or probed and llama.cpp is never imported.

    Raises:
        UsageError: No base URL, or ``api_key_env`` names an unset variable (checked
            before any request).
        RemoteError: The server cannot be reached or lists no model.
        RemoteCancelled: ``cancel`` was set before the server answered (exit 130).
    """
    from gemma_chat.errors import UsageError

    if not settings.base_url:
        raise UsageError("the openai backend needs a server: --base-url URL or --remote NAME")
    key = api_key(settings.api_key_env, settings.profile)
    if message is not None and settings.ctx is not None:
        check_input_size(message, settings.ctx)
    # Imported here: the CLI's local path never needs httpx.
    from gemma_chat.backend.remote import OpenAIBackend

    # Asks the server for its models: unreachable fails here, in one line, and an unset
    # model becomes the first one the server lists.
    backend = OpenAIBackend.connect(
        settings.base_url,
        api_key=key,
        model=settings.model,
        n_ctx=settings.ctx,
        timeout_s=settings.timeout,
        reply_timeout_s=settings.reply_timeout,
        cancel=cancel,
    )
    try:
        n_ctx = backend.info.n_ctx
        if message is not None and settings.ctx is None and n_ctx:
            check_input_size(message, n_ctx)
        info = RemoteModelInfo(
            model=backend.info.model, base_url=settings.base_url, context_length=n_ctx
        )
    except BaseException:
        backend.close()
        raise
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
        gpus: The GPUs found (see :func:`gemma_chat.planning.hardware.gpus`).

    Raises:
        ModelError: The metadata cannot be read, or lacks what the planner needs.
    """
    from gemma_chat.models.gguf_meta import read_gguf_meta
    from gemma_chat.planning import hardware
    from gemma_chat.planning.model_shape import ModelShape, ShapeError
    from gemma_chat.planning.planner import plan_memory

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
            from gemma_chat.planning import hardware

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
