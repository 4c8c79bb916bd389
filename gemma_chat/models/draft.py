"""Choosing the decoding mode and loading a ``--draft-model`` next to the main model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.models.resolve import inspect_model, resolve_model


def speculative_mode(settings: Settings) -> str:
    """The decoding the local backend uses: ``off``, ``lookup`` or ``draft``.

    ``auto`` is ``draft`` when a draft model is set, else ``lookup`` (the README's
    Performance section has the measurements behind that choice).

    Raises:
        UsageError: ``draft`` without a draft model.
    """
    mode = settings.speculative
    if mode == "off":
        return "off"
    if mode == "draft" or (mode == "auto" and settings.draft_model):
        if not settings.draft_model:
            raise UsageError("--speculative draft needs a draft model: --draft-model PATH|NAME")
        return "draft"
    return "lookup"


def attach_draft_model(
    settings: Settings,
    backend: Any,
    n_ctx: int,
    notify: Callable[[str], None],
    plan_for: Callable[[Path, int], Any],
) -> None:
    """Load the settings' draft model into its own context and hand it to ``backend``.

    The file is probed in a child process first (like the main model); its vocabulary is
    compared with the main model's before any weights are loaded; and the memory planner
    checks that its weights' working set, KV cache and compute buffers fit in the free
    RAM left (it runs on the CPU): ``plan_for(path, n_ctx)`` gives its memory plan on the
    CPU (see ``gemma_chat.models.loader.memory_plan``).

    Raises:
        UsageError: No draft model is set.
        ModelError: It cannot be found, loaded, planned, or its vocabulary differs.
    """
    from gemma_chat.backend.draft_model import DraftModel, check_same_vocab
    from gemma_chat.backend.local import load_vocab

    if not settings.draft_model:
        raise UsageError("--speculative draft needs a draft model: --draft-model PATH|NAME")
    path = resolve_model(settings.draft_model, notify, settings=settings)
    info = inspect_model(path, flash_attn=settings.flash_attn)
    check_same_vocab(backend.tokenizer, load_vocab(path), path.name)
    plan = plan_for(Path(info.path), n_ctx)
    if not plan.fits_ram:
        raise ModelError(
            f"the draft model {path.name} needs {plan.cpu_bytes / 2**20:.0f} MiB at context "
            f"{n_ctx}; {plan.free_ram / 2**20:.0f} MiB of RAM is free"
        )
    backend.draft_model = DraftModel(
        path, n_ctx=n_ctx, threads=backend.info.threads, flash_attn=settings.flash_attn
    )
