"""The settings for a run: the config file merged with the command line (which wins)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from gemma_chat.config.config_file import describe_validation_error, load_config
from gemma_chat.config.remote import apply_remote, choose_backend
from gemma_chat.config.settings import SAMPLING_KEYS, SavedPrompt, Settings, threads_from_env
from gemma_chat.errors import UsageError


def parse_gpu_layers(value: str | None) -> int | str | None:
    """``all``, ``auto`` or a non-negative number."""
    if value is None:
        return None
    if value.strip().lower() in ("all", "auto"):
        return value.strip().lower()
    try:
        layers = int(value)
    except ValueError:
        raise UsageError(f"--gpu-layers takes a number, 'all' or 'auto', not {value!r}") from None
    if layers < 0:
        raise UsageError("--gpu-layers cannot be negative")
    return layers


_SPEC = ("speculative", "draft_model")


def build_settings(
    prompt: SavedPrompt | None = None, *, threads_env: bool = True, **cli: Any
) -> Settings:
    """Merge the config file, a saved prompt and the command line, in that order of
    precedence from lowest: the command line wins over the prompt, the prompt over the
    config.

    Keyword arguments are the CLI option values, None where not given.
    ``$GEMMA_CHAT_THREADS`` is read only when ``--threads`` is not given and the model is
    local, and not at all with ``threads_env=False`` (``doctor`` reports a bad value and
    goes on without it; ``pull`` and ``prompt`` run no model).

    Raises:
        UsageError: A value is invalid, in the config or on the command line.
    """
    data = load_config()
    sampling = dict(data.get("sampling", {}))
    guard = dict(data.get("repeat_guard", {}))
    if prompt is not None:
        sampling.update(prompt.sampling)
        if prompt.system is not None:
            data["system"] = prompt.system
    config_backend = data.get("backend")
    backend = choose_backend(data, cli)
    # Like $GEMMA_CHAT_MODEL: over the config, under the flag (not read when the flag is
    # given: a stale value in the environment must not refuse an explicit command line).
    # Not read for a server either: its threads are the server's.
    local = backend != "openai"
    env_threads = (
        threads_from_env() if threads_env and local and cli.get("threads") is None else None
    )
    if env_threads is not None:
        data["threads"] = env_threads
    for key in ("system", "ctx", "gpu", "threads", "flash_attn", "debug", "long_input", *_SPEC):
        if cli.get(key) is not None:
            data[key] = cli[key]
    if backend == "openai":
        server_model = data.get("model") if config_backend == "openai" else None
        apply_remote(data, cli, server_model)  # after the loop: the profile's ctx, then --ctx
    else:
        data["backend"] = "local"
        # Model order: --model, then $GEMMA_CHAT_MODEL, then the config file, then the demo.
        model = cli.get("model") or os.environ.get("GEMMA_CHAT_MODEL") or data.get("model")
        data["model"] = model or None
    layers = parse_gpu_layers(cli.get("gpu_layers"))
    if layers is not None:
        data["gpu_layers"] = layers
    for key in SAMPLING_KEYS:
        if cli.get(key) is not None:
            sampling[key] = cli[key]
    if cli.get("no_repeat_guard"):
        guard["enabled"] = False
    data["sampling"], data["repeat_guard"] = sampling, guard
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        # `from None`: pydantic's own text repeats the input, which may be a secret.
        raise UsageError(describe_validation_error(exc)) from None
