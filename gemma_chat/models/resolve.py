"""Finding the model file and checking it before it is loaded.

Resolution order: ``--model``, ``$GEMMA_CHAT_MODEL``, the config file, then the demo
model (the ``demo`` extra), which is assembled once into the cache directory. A model is
checked (header here, the rest by llama.cpp in a child process) before it is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_chat import paths
from gemma_chat.errors import ModelError
from gemma_chat.files import file_version, read_regular_file
from gemma_chat.models.child import run_child
from gemma_chat.models.demo import demo_model
from gemma_chat.models.gguf_meta import check_header
from gemma_chat.models.kind import ModelKind, classify

if TYPE_CHECKING:
    from gemma_chat.config.settings import Settings

PROBE_TIMEOUT_S = 300
_PROBE_FORMAT = 7  # bump when the probe's output changes, to invalidate cached results
NO_MODEL_HINT = (
    "no model found: pass --model PATH.gguf, set GEMMA_CHAT_MODEL, set model in the "
    "config file, or install the demo model with: pip install 'gemma-chat[demo]'"
)


@dataclass(frozen=True)
class ModelInfo:
    """What llama.cpp's reader found in a GGUF file."""

    path: str
    architecture: str
    name: str | None
    size_label: str | None
    quantization: str | None
    file_type: int | None
    context_length: int | None
    block_count: int | None
    n_vocab: int
    start_of_turn: int | None
    end_of_turn: int | None
    attn_logit_softcapping: bool
    final_logit_softcapping: bool
    file_size: int
    sha256: str | None = None
    """The file's sha256, computed once by the probe (cached per file version)."""
    basename: str | None = None
    finetune: str | None = None
    """``general.basename`` and ``general.finetune``, when the file has them."""
    chat_template: bool | None = None
    """Whether the file has ``tokenizer.chat_template`` (None: not probed for it)."""

    @property
    def kind(self) -> ModelKind:
        """Base or instruction-tuned, and why (see :mod:`gemma_chat.models.kind`)."""
        return classify(
            finetune=self.finetune,
            names=(self.name, self.display_name, self.basename),
            chat_template=self.chat_template,
        )

    @property
    def display_name(self) -> str:
        """The file name, which is how users know their models."""
        return Path(self.path).name

    def warnings(self) -> list[str]:
        """One-line warnings about a file that loads but will behave badly."""
        found = []
        if self.architecture == "gemma2" and not (
            self.attn_logit_softcapping and self.final_logit_softcapping
        ):
            found.append(
                f"{self.display_name} lacks the Gemma 2 soft-capping keys: it is an old "
                "(pre-July 2024) conversion and gives degraded output; re-download or "
                "re-convert it"
            )
        return found


def resolve_model(
    value: str | None,
    notify: Callable[[str], None] | None = None,
    *,
    settings: Settings | None = None,
) -> Path:
    """The model file named by the settings, or the demo model when none is named.

    The settings already applied the order ``--model``, ``$GEMMA_CHAT_MODEL``, config
    (see :func:`gemma_chat.cli.run_settings.build_settings`). ``demo`` names the demo model.
    A value that is a path, or names an existing file, is that file; otherwise it is a
    short name: an alias from the config, or the stem (or name) of a file that
    ``gemma-chat models`` lists.

    Args:
        value: A path, a short name, ``demo``, or None.
        notify: Told about slow steps (assembling the demo model).
        settings: Where the aliases and model folders come from; read from the config
            file when not given (only needed for short names).

    Raises:
        ModelError: Nothing names a model and the demo model is not installed, or a
            short name matches nothing.
        UsageError: A short name matches more than one file.
    """
    if value and value != "demo":
        path = Path(value).expanduser()
        if paths.looks_like_path(value) or path.is_file():
            return path
        from gemma_chat.models.discovery import lookup

        if settings is None:
            from gemma_chat.config.config_file import load_config
            from gemma_chat.config.settings import Settings

            settings = Settings.model_validate(load_config())
        found = lookup(value, settings, notify)
        if found is not None:
            return found
        if value.lower().endswith(".gguf"):
            return path  # reported as a missing file, as before short names existed
        raise ModelError(
            f"no model named {value!r}: it is not a file, an alias in the config, or the "
            "name of a model found on this machine (run 'gemma-chat models' to list them)"
        )
    demo = demo_model(notify)
    if demo is None:
        raise ModelError(NO_MODEL_HINT)
    return demo


def inspect_model(path: Path, *, flash_attn: bool = True, use_cache: bool = True) -> ModelInfo:
    """Check a model file and read its metadata without risking this process.

    The header is checked here; the rest is read and test-run by llama.cpp in a child
    process (see :mod:`gemma_chat.backend.probe`), and the result is cached per file
    version.

    Args:
        path: The GGUF file.
        flash_attn: Whether the model will run with flash attention (the probe runs the
            same compute graph).
        use_cache: Re-use an earlier verdict for the same file version.

    Raises:
        ModelError: The file is missing, not a GGUF, truncated, malformed, or not a
            Gemma chat model.
    """
    size = check_header(path)
    cache = _probe_cache_file(path, flash_attn)
    data = None
    if use_cache:
        try:
            data = json.loads(read_regular_file(cache, _CACHE_LIMIT))
        except (OSError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            data = None
    if data is None:
        data = _run_probe(path, flash_attn)
        with contextlib.suppress(OSError):  # an unwritable cache only costs a re-probe
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(data))
    info = ModelInfo(
        path=str(path),
        file_size=size,
        **{key: data.get(key) for key in _PROBED_FIELDS},
    )
    if info.start_of_turn is None or info.end_of_turn is None:
        missing = [
            name
            for name, tid in (
                ("<start_of_turn>", info.start_of_turn),
                ("<end_of_turn>", info.end_of_turn),
            )
            if tid is None
        ]
        raise ModelError(
            f"not a Gemma chat model: the vocabulary of {path.name} has no "
            f"{' or '.join(missing)} control token"
        )
    return info


_PROBED_FIELDS = (
    "architecture",
    "name",
    "size_label",
    "quantization",
    "file_type",
    "context_length",
    "block_count",
    "n_vocab",
    "start_of_turn",
    "end_of_turn",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "sha256",
    "basename",
    "finetune",
    "chat_template",
)


_CACHE_LIMIT = 64 * 1024  # a probe verdict is a few hundred bytes


def _probe_cache_file(path: Path, flash_attn: bool) -> Path:
    """Where the verdict for this version of ``path`` is cached.

    The key holds the file's identity from :func:`gemma_chat.files.file_version`:
    device, inode and ctime besides size and mtime. A verdict says "llama.cpp loads this
    file without aborting", so applying it to another file would let a malformed one
    abort this process (and leave a TUI's terminal broken). Size and mtime can be copied
    onto a malformed replacement; a replacement by rename has a new inode, and an
    in-place rewrite gets a new ctime, which no call can set back. So a replaced file is
    probed again, while an unchanged one costs no more than a stat.
    """
    try:
        version = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        version = "unknown"
    key = f"{_PROBE_FORMAT}|{path.resolve()}|{file_version(path)}|{version}|{flash_attn}"
    digest = hashlib.sha256(os.fsencode(key)).hexdigest()[:32]  # any file name
    return paths.cache_dir() / "probes" / f"{digest}.json"


def _run_probe(path: Path, flash_attn: bool) -> dict[str, object]:
    args = [sys.executable, "-m", "gemma_chat.backend.probe", os.path.abspath(path)]
    if not flash_attn:
        args.append("--no-flash-attn")
    try:
        proc = run_child(args, PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelError(f"reading {path} took longer than {PROBE_TIMEOUT_S} s") from None
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if proc.returncode == 0 and isinstance(data, dict):
        return data
    if proc.returncode == 1 and isinstance(data, dict) and "error" in data:
        raise ModelError(_explain_load_error(str(data["error"]), path))
    crash = _crash_line(proc.stderr)
    raise ModelError(
        f"{path} is malformed: llama.cpp crashed reading it: {crash}. "
        "It was not loaded; re-download or re-convert it"
    )


def _explain_load_error(message: str, path: Path) -> str:
    reason = message.rsplit(f"{path}: ", 1)[-1]
    if any(hint in reason for hint in ("file bounds", "failed to read", "truncated")):
        return f"model file is truncated or corrupt: {path} ({reason})"
    return message


def _crash_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.search(r"GGML_ASSERT\((.*)\) failed", line)
        if match:
            return f"GGML_ASSERT({match.group(1)}) failed"
    for line in reversed(lines):
        if "error" in line.lower() or "terminate called" in line:
            return line
    return lines[-1] if lines else "no message"
