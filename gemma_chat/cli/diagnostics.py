"""What ``gemma-chat doctor`` reports: the llama.cpp build, threads, RAM and VRAM, the
resolved model and its memory plan, where files live, and what to do next.

:func:`gather` never raises for a missing or broken model: the report says what is
wrong instead. Everything is plain data (JSON-ready); :mod:`gemma_chat.cli.doctor`
renders it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from gemma_chat import paths
from gemma_chat.backend import build_info
from gemma_chat.config.settings import THREADS_ENV, Settings
from gemma_chat.errors import GemmaChatError
from gemma_chat.planning import hardware


def gather(settings: Settings, config_error: str | None = None) -> dict[str, Any]:
    """Collect the whole report.

    Args:
        settings: The settings gemma-chat would run with.
        config_error: Why the config file could not be used, if it could not.
    """
    build = build_info.llama_build()
    gpus = hardware.gpus(gpu_build=build["gpu_offload"])
    memory = hardware.system_memory()
    report: dict[str, Any] = {
        "llama_cpp": build,
        "threads": threads(settings),
        "memory": {
            "ram_total": memory.total,
            "ram_available": memory.available,
            "gpus": [asdict(gpu) for gpu in gpus],
        },
        "model": model_section(settings, build["gpu_offload"], gpus),
        "paths": file_paths(settings),
        "models_found": models_found(settings),
        "config_error": config_error,
    }
    report["next_steps"] = next_steps(report)
    return report


def threads(settings: Settings) -> dict[str, Any]:
    """Cores, the cores this process may use, and the threads gemma-chat will use."""
    from gemma_chat.backend.local import default_threads

    return {
        **hardware.cpu_counts(),
        "setting": settings.threads,
        "used": settings.threads or default_threads(),
    }


def model_section(settings: Settings, gpu_build: bool, gpus: list[hardware.Gpu]) -> dict[str, Any]:
    """The resolved model, whether llama.cpp can load it, and its memory plan."""
    from gemma_chat.models.loader import context_size, memory_plan
    from gemma_chat.models.resolve import inspect_model, resolve_model

    notes: list[str] = []
    section: dict[str, Any] = {
        "setting": settings.model,
        "gpu_layers": settings.gpu_layers,
        "path": None,
        "error": None,
    }
    try:
        path = resolve_model(settings.model, notes.append, settings=settings)
        section["path"] = str(path)
        info = inspect_model(path, flash_attn=settings.flash_attn)
    except GemmaChatError as exc:
        section["error"] = str(exc)
        return section
    n_ctx = context_size(settings, info, notes.append)
    section.update(
        name=info.display_name,
        architecture=info.architecture,
        size_label=info.size_label,
        quantization=info.quantization,
        kind=info.kind.kind,
        kind_reason=info.kind.reason,
        file_size=info.file_size,
        context_length=info.context_length,
        n_ctx=n_ctx,
        warnings=info.warnings() + notes,
        plan=None,
        plan_error=None,
        gpu_build_plan=None,
    )
    try:
        plan = memory_plan(settings, path, n_ctx, supported=gpu_build, gpus=gpus)
        if not gpu_build and gpus:
            # A GPU this build cannot use: say what a GPU build would do with it, so
            # "does it fit on my GPU?" is answered before anyone reinstalls.
            section["gpu_build_plan"] = memory_plan(
                settings, path, n_ctx, supported=True, gpus=gpus
            ).to_dict()
    except GemmaChatError as exc:
        section["plan_error"] = str(exc)
    else:
        section["plan"] = plan.to_dict()
    return section


def models_found(settings: Settings) -> list[dict[str, str]]:
    """The models discovery finds (``gemma-chat models``): name and kind of each one
    that can be read."""
    from gemma_chat.models.discovery import entry_kind, list_models

    try:
        entries = list_models(settings)
    except GemmaChatError:
        return []
    return [
        {"name": entry.name, "kind": entry_kind(entry).kind}
        for entry in entries
        if entry.error is None
    ]


def file_paths(settings: Settings) -> dict[str, dict[str, Any]]:
    """Where gemma-chat's files live, and whether each exists yet."""
    from gemma_chat.history.problems import store_file

    found = {
        "config_file": paths.config_file(),
        "data_dir": paths.data_dir(),
        "cache_dir": paths.cache_dir(),
        "models_dir": paths.models_dir(settings.models_dir),
        "themes_dir": paths.config_dir() / "themes",
        "history_db": store_file(),
    }
    return {key: {"path": str(path), "exists": Path(path).exists()} for key, path in found.items()}


def next_steps(report: dict[str, Any]) -> list[str]:
    """What the user should do, one line each (empty when all is well)."""
    from gemma_chat.backend.offload import CUDA_HINT
    from gemma_chat.units import format_bytes

    steps = []
    error = report["config_error"]
    if error:
        where = "the environment" if error.startswith(THREADS_ENV) else "the config file"
        steps.append(f"fix {where}: {error}")
    build, model = report["llama_cpp"], report["model"]
    gpus = report["memory"]["gpus"]
    if not build["gpu_offload"] and gpus:
        # Only with a GPU to use: on a machine without one, the CPU build is right.
        gpu_plan = (model.get("gpu_build_plan") or {}).get("verdict")
        with_gpu = f" With a GPU build: {gpu_plan}." if gpu_plan else ""
        steps.append(
            f"this llama.cpp build has no GPU support ({gpus[0]['name']} is installed):"
            f"{with_gpu} To use the GPU, {CUDA_HINT}"
        )
    if model["error"]:
        steps.append(
            model["error"]
            if model["path"] is None
            else f"the model cannot be used: {model['error']}"
        )
        return steps
    steps.extend(model["warnings"])
    plan = model.get("plan")
    if model.get("plan_error"):
        steps.append(f"no memory plan: {model['plan_error']}")
    elif plan and not plan["fits_ram"]:
        steps.append(
            f"the model needs {format_bytes(plan['cpu_bytes'])} of RAM but "
            f"{format_bytes(plan['free_ram'])} is "
            "free: close other programs, use a smaller --ctx or a smaller quantization"
        )
    elif plan and plan["free_vram"] is not None and model["gpu_layers"] == "auto":
        layers, most = plan["gpu_layers"], plan["max_layers"]
        if layers < most:
            fit = f"only {layers} of {most} layers fit" if layers else "not even one layer fits"
            steps.append(
                f"{fit} in the {format_bytes(plan['free_vram'])} of free VRAM: a smaller --ctx or "
                "quantization puts more on the GPU"
            )
    steps.extend(_chat_model_steps(model, report["models_found"]))
    return steps


def _chat_model_steps(model: dict[str, Any], found: list[dict[str, str]]) -> list[str]:
    """A pull when only base models are found; another model when this one is base."""
    from gemma_chat.models.kind import pull_hint

    hint = pull_hint([entry["kind"] for entry in found] + [model.get("kind", "unknown")])
    if hint:
        return [hint]
    chat = [entry["name"] for entry in found if entry["kind"] == "instruct"]
    if model.get("kind") == "base" and chat:
        return [
            f"{model['name']} is a base model (it continues text rather than answer it): "
            f"chat with an instruction-tuned one, --model {chat[0]}"
        ]
    return []
