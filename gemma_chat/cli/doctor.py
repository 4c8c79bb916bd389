"""``gemma-chat doctor``: everything that matters for running well, and what to do next.

It exits 0 whenever it could write its report, even when no model is found, the model
is broken or the config file is invalid: those are findings, reported as such. The
report is gathered by :mod:`gemma_chat.cli.diagnostics`, imported inside the command so that
registering it costs the other commands nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import typer

from gemma_chat.cli import options as o
from gemma_chat.cli import run_settings
from gemma_chat.errors import UsageError
from gemma_chat.sanitize import one_line


def doctor(
    ctx: typer.Context,
    model: o.ModelOpt = None,
    ctx_size: o.CtxOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Check the llama.cpp build, threads, RAM and VRAM, the model and its memory plan,
    and where files live; then say what to do next."""
    from gemma_chat.cli.diagnostics import gather
    from gemma_chat.cli.options import with_root_options

    values = with_root_options(ctx, {"model": model, "ctx": ctx_size})
    cli = {key: values.get(key) for key in ("model", "ctx", "gpu", "gpu_layers", "threads")}
    cli["flash_attn"] = values.get("flash_attn")
    settings, config_error = _settings(cli)
    report = gather(settings, config_error)
    report["threads"]["source"] = _threads_source(cli, settings)
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))


def _settings(cli: dict[str, Any]) -> tuple[Any, str | None]:
    """The settings, and the config file's error when it had to be left out: a doctor
    that refused to run on a bad config could not say what else is wrong."""
    from pydantic import ValidationError

    from gemma_chat.config.config_file import describe_validation_error
    from gemma_chat.config.settings import Settings, threads_from_env

    try:  # a bad $GEMMA_CHAT_THREADS is reported, and the config still applies
        from_env, env_error = threads_from_env(), None
    except UsageError as exc:
        from_env, env_error = None, str(exc)
    try:
        settings = run_settings.build_settings(**cli, threads_env=env_error is None)
        if settings.backend == "openai" and from_env and cli.get("threads") is None:
            # A server config skips the variable, but the report is about local runs
            # (`--backend local`), where it wins over the config's threads.
            settings = settings.model_copy(update={"threads": from_env})
        return settings, env_error
    except UsageError as exc:
        config_error = str(exc) if env_error is None else f"{exc}; {env_error}"
    data: dict[str, Any] = {k: v for k, v in cli.items() if k != "gpu_layers" and v is not None}
    layers = run_settings.parse_gpu_layers(cli.get("gpu_layers"))
    if layers is not None:
        data["gpu_layers"] = layers
    data["model"] = cli.get("model") or os.environ.get("GEMMA_CHAT_MODEL") or None
    if from_env and "threads" not in data:  # a local run would still use the variable
        data["threads"] = from_env
    try:
        return Settings.model_validate(data), config_error
    except ValidationError as exc:  # the command line itself is wrong
        raise UsageError(describe_validation_error(exc)) from exc


def _threads_source(cli: dict[str, Any], settings: Any) -> str | None:
    """Where the thread count comes from (None: every usable core)."""
    from gemma_chat.config.settings import THREADS_ENV, threads_from_env

    if settings.threads is None:
        return None
    if cli.get("threads") is not None:
        return "--threads"
    try:
        from_env = threads_from_env()
    except UsageError:
        from_env = None
    return THREADS_ENV if from_env == settings.threads else "config file"


def render(report: dict[str, Any]) -> str:
    """The report as aligned text sections. Every value is one safe line: model paths,
    GGUF metadata and error messages are untrusted text."""
    from gemma_chat.units import format_bytes

    build, threads, memory = report["llama_cpp"], report["threads"], report["memory"]
    devices = ", ".join(f"{d['name']} ({d['description']})" for d in build["devices"])
    cpu_features = " ".join(build["features"].get("CPU", []))
    gpus = [
        f"{g['name']}: {format_bytes(g['free'])} free of {format_bytes(g['total'])} ({g['source']})"
        for g in memory["gpus"]
    ]
    setting = threads.get("source") or "every usable core"
    sections = [
        (
            "llama.cpp",
            [
                ("llama-cpp-python", build["version"]),
                ("GPU offload", "yes" if build["gpu_offload"] else "no (CPU-only build)"),
                ("backends", ", ".join(build["backends"])),
                ("devices", devices or "none"),
                ("BLAS", "yes" if build["blas"] else "no"),
                ("CPU features", cpu_features or "none reported"),
            ],
        ),
        (
            "threads",
            [
                ("cores", _cores(threads)),
                ("gemma-chat uses", f"{threads['used']} threads ({setting})"),
            ],
        ),
        (
            "memory",
            [
                (
                    "RAM",
                    f"{format_bytes(memory['ram_available'])} available of "
                    f"{format_bytes(memory['ram_total'])}",
                ),
                ("GPUs", "; ".join(gpus) or "none found"),
            ],
        ),
        ("model", _model_rows(report["model"])),
        (
            "paths",
            [(key.replace("_", " "), _path(entry)) for key, entry in report["paths"].items()],
        ),
    ]
    lines = []
    for title, rows in sections:
        lines.append(title)
        lines.extend(f"  {key:<17} {one_line(str(value))}" for key, value in rows)
    lines.append("next steps")
    lines.extend(f"  - {one_line(step)}" for step in report["next_steps"] or ["none: all set"])
    return "\n".join(lines)


def _cores(threads: dict[str, Any]) -> str:
    parts = [f"{threads['logical']} logical"]
    if threads["physical"]:
        parts.append(f"{threads['physical']} physical")
    if threads["affinity"]:
        parts.append(f"{threads['affinity']} usable by this process")
    return ", ".join(parts)


def _model_rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    from gemma_chat.units import format_bytes

    rows = [("file", model["path"] or "none")]
    if model["error"]:
        return [*rows, ("problem", model["error"])]
    about = [model["architecture"], model["size_label"], model["quantization"]]
    details = " ".join(part for part in about if part)
    context = model["context_length"] or "unknown"
    rows.append(
        ("model", f"{details}, {format_bytes(model['file_size'])}, trained context {context}")
    )
    rows.append(("type", f"{model['kind']} ({model['kind_reason']})"))
    rows.append(("context", f"{model['n_ctx']} tokens"))
    plan = model["plan"]
    if plan:
        rows.append(("plan", plan["verdict"]))
        layers = "all" if plan["gpu_layers"] == plan["max_layers"] else plan["gpu_layers"]
        rows.append(("GPU layers", f"{layers} of {plan['max_layers']}"))
    else:
        rows.append(("plan", f"none: {model['plan_error']}"))
    return rows


def _path(entry: dict[str, Any]) -> str:
    return entry["path"] + ("" if entry["exists"] else " (not created yet)")
