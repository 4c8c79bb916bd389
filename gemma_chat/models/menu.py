"""The choices of the app's model picker: every model discovery finds, with a one-line
summary and its memory plan at the context gemma-chat would load it with.

Core code (no Textual): the picker runs :func:`model_choices` in a worker, since it reads
files and may run ``nvidia-smi``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gemma_chat.chat.context import default_ctx, round_ctx
from gemma_chat.config.settings import Settings
from gemma_chat.errors import GemmaChatError
from gemma_chat.models.discovery import ModelEntry, entry_kind, list_models, record
from gemma_chat.units import format_bytes


@dataclass(frozen=True)
class ModelChoice:
    """One model in the picker.

    Attributes:
        name: Its short name.
        model: What ``--model`` would be given: the file's path, or ``demo``.
        summary: Size, quantization, context, file size and where it was found.
        plan: The memory plan's verdict at the context it would load with.
        error: Why it cannot be loaded (it is listed, but cannot be chosen).
        current: It is the model loaded now.
        kind: ``base``, ``instruct`` or ``unknown`` (see :mod:`gemma_chat.models.kind`).
    """

    name: str
    model: str
    summary: str
    plan: str | None
    error: str | None
    current: bool
    kind: str = "unknown"


def model_choices(
    settings: Settings, current: str | None, gpu_supported: bool
) -> list[ModelChoice]:
    """Every model discovery finds, the loaded one first.

    Args:
        settings: The settings (sources, context size, GPU switch).
        current: The path of the loaded model, if any.
        gpu_supported: Whether the llama.cpp build can offload to a GPU.
    """
    from gemma_chat.planning import hardware

    gpus = hardware.gpus(gpu_supported)
    choices = [
        _choice(entry, settings, current, gpu_supported, gpus) for entry in list_models(settings)
    ]
    choices.sort(key=lambda choice: not choice.current)  # stable: discovery order otherwise
    return choices


def _choice(
    entry: ModelEntry, settings: Settings, current: str | None, gpu_supported: bool, gpus: list
) -> ModelChoice:
    choice = _plain_choice(entry, settings, current, gpu_supported, gpus)
    return replace(choice, kind=entry_kind(entry).kind)


def _plain_choice(
    entry: ModelEntry, settings: Settings, current: str | None, gpu_supported: bool, gpus: list
) -> ModelChoice:
    info = record(entry)
    is_current = current is not None and _same(entry.path, current)
    model = "demo" if entry.source == "demo" else str(entry.path)
    if entry.error:
        return ModelChoice(entry.name, model, _summary(info), None, entry.error, is_current)
    if not entry.assembled:
        note = "assembled into the cache when first chosen"
        return ModelChoice(entry.name, model, _summary(info), note, None, is_current)
    plan = None
    try:
        from gemma_chat.models.loader import memory_plan

        n_ctx = round_ctx(settings.ctx) if settings.ctx else default_ctx(info["context_length"])
        plan = memory_plan(settings, entry.path, n_ctx, supported=gpu_supported, gpus=gpus).verdict
    except GemmaChatError as exc:
        plan = f"no memory plan: {exc}"
    except Exception as exc:  # one odd file must not take the whole picker down
        plan = f"no memory plan: {type(exc).__name__}: {exc}"
    return ModelChoice(entry.name, model, _summary(info), plan, None, is_current)


def _summary(info: dict) -> str:
    parts = [
        {"base": "base model", "instruct": "instruction-tuned"}.get(info["kind"]),
        info.get("architecture"),
        info.get("size_label"),
        info.get("quantization"),
        f"ctx {info['context_length']:,}" if info.get("context_length") else None,
        format_bytes(info["file_size"]) if info.get("file_size") else None,
        info.get("source"),
    ]
    return " · ".join(str(part) for part in parts if part)


def _same(path: Path, other: str) -> bool:
    try:
        return path.resolve() == Path(other).resolve()
    except OSError:
        return False
