"""Finding the GGUF models on this machine, and naming them by a short name.

Sources, in order, each file listed once (hard links and symlinks included):

1. the models directory (:func:`gemma_chat.paths.models_dir`), where ``pull`` puts models;
2. ``model_paths`` from the config (files, or folders searched like the models directory);
3. ``aliases`` from the config;
4. the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), ``models--org--name/snapshots/<commit>/**.gguf``;
5. the demo model, when the ``demo`` extra is installed. Listing never assembles it (that
   writes 250 MB): until first use it is listed as not assembled, without metadata.

Folders are searched four levels deep, skipping hidden entries (partial downloads). A
split model (``name-00001-of-00003.gguf``) is listed once, by its first shard, as
``name``. The Hugging Face cache is walked here rather than with ``huggingface_hub``'s
``scan_cache_dir``, which drops a whole repository when one symlink is broken and stats
every blob of every repository.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_chat import paths
from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.files import read_regular_file
from gemma_chat.models.gguf_meta import SHARD_RE, GGUFMeta, read_many
from gemma_chat.models.kind import ModelKind, classify, kind_of_metadata

SOURCES = ("models-dir", "config", "alias", "hf-cache", "demo")
"""Where discovery finds files, in order (``"path"`` marks a file named on the command line)."""
MAX_DEPTH = 4
DEMO_NAME = "demo"
REF_LIMIT = 4096  # a Hugging Face cache ref holds one commit hash


@dataclass(frozen=True)
class ModelEntry:
    """One model file found by discovery.

    Attributes:
        path: The file (the first shard of a split model), as found.
        source: Where it was found: one of :data:`SOURCES`.
        name: Its short name: the first alias pointing at it, else :attr:`stem`.
        aliases: Every config alias that points at it.
        repo: The Hugging Face repository, for a file in the Hugging Face cache.
        assembled: False for the demo model before its first use (no file yet).
        meta: Its metadata, once read (:func:`list_models`).
        error: Why it cannot be used (missing, broken link, malformed), one line.
    """

    path: Path
    source: str
    name: str
    aliases: tuple[str, ...] = ()
    repo: str | None = None
    assembled: bool = True
    meta: GGUFMeta | None = None
    error: str | None = None

    @property
    def stem(self) -> str:
        """The file name without ``.gguf`` and without a shard suffix."""
        match = SHARD_RE.match(self.path.name)
        if match:
            return match["prefix"]
        name = self.path.name
        return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name

    def names(self) -> tuple[str, ...]:
        """Every short name this entry answers to."""
        extra = (DEMO_NAME,) if self.source == "demo" else ()
        return (*self.aliases, *extra, self.stem, self.path.name)


def find_models(settings: Settings) -> list[ModelEntry]:
    """Every model file the sources name, without reading any (see the module docstring)."""
    entries: list[ModelEntry] = []
    seen: set[object] = set()
    for entry in _candidates(settings):
        identity = _identity(entry.path)
        if identity in seen:
            continue
        seen.add(identity)
        entries.append(entry)
    by_file: dict[object, list[str]] = {}
    for alias, target in settings.aliases.items():
        by_file.setdefault(_identity(alias_path(target)), []).append(alias)
    named = []
    for entry in entries:
        aliases = tuple(by_file.get(_identity(entry.path), ()))
        name = aliases[0] if aliases else DEMO_NAME if entry.source == "demo" else entry.stem
        named.append(dataclasses.replace(entry, aliases=aliases, name=name))
    return named


def list_models(settings: Settings, *, use_cache: bool = True) -> list[ModelEntry]:
    """:func:`find_models` with each file's metadata read (or the reason it cannot be)."""
    entries = find_models(settings)
    readable = [entry.path for entry in entries if entry.error is None and entry.assembled]
    results = read_many(readable, use_cache=use_cache) if readable else {}
    listed = []
    for entry in entries:
        result = results.get(entry.path)
        if isinstance(result, ModelError):
            entry = dataclasses.replace(entry, error=str(result))
        elif result is not None:
            entry = dataclasses.replace(entry, meta=result)
        listed.append(entry)
    return listed


def entry_for(path: Path, settings: Settings, meta: GGUFMeta | None = None) -> ModelEntry:
    """The discovered entry for ``path`` (its source, name and aliases), with ``meta``.

    A file no source lists gets the source ``"path"`` and its stem as name.
    """
    identity = _identity(path)
    for entry in find_models(settings):
        if _identity(entry.path) == identity:
            return dataclasses.replace(entry, meta=meta, assembled=True)
    entry = ModelEntry(path, "path", path.name, meta=meta)
    return dataclasses.replace(entry, name=entry.stem)


def lookup(
    name: str, settings: Settings, notify: Callable[[str], None] | None = None
) -> Path | None:
    """The model file a short name stands for: an alias, a file stem or a file name.

    Returns:
        The path, or None when nothing has that name.

    Raises:
        UsageError: More than one file has that name; the message lists them.
    """
    if name in settings.aliases:
        return alias_path(settings.aliases[name])
    entries = find_models(settings)
    matches = [entry for entry in entries if name in entry.names()]
    if not matches:  # `gemma-2-9b-it-q4_k_m` for `gemma-2-9b-it-Q4_K_M`
        folded = name.casefold()
        matches = [e for e in entries if folded in {n.casefold() for n in e.names()}]
    if len(matches) > 1:
        # `pull` installs into the models folder and names the file by its stem; the
        # same file name elsewhere (another repository in the HF cache) must not make
        # that name ambiguous.
        own = [entry for entry in matches if entry.source == SOURCES[0]]
        if len(own) == 1 and all(e.source in (SOURCES[0], "hf-cache") for e in matches):
            matches = own
    if len(matches) > 1:
        listing = "; ".join(f"{entry.path} ({entry.source})" for entry in matches)
        raise UsageError(
            f"the model name {name!r} is ambiguous: {listing}. Pass a path, or set an "
            "alias in the config"
        )
    if not matches:
        return None
    if matches[0].source == "demo":
        from gemma_chat.models.demo import demo_model

        return demo_model(notify)
    return matches[0].path


def record(entry: ModelEntry) -> dict[str, Any]:
    """The entry as a JSON-ready dict; every key is always present (None when unknown).

    This is the schema of ``gemma-chat models --json`` and the summary of ``models info``.
    """
    meta = entry.meta
    kv = meta.kv if meta else {}
    turns = meta.turn_tokens if meta else {}
    size = meta.file_size if meta else _file_size(entry)
    return {
        "name": entry.name,
        "path": str(entry.path),
        "source": entry.source,
        "aliases": list(entry.aliases),
        "repo": entry.repo,
        "assembled": entry.assembled,
        "error": entry.error,
        "architecture": (meta.architecture or None) if meta else None,
        "model_name": _str(kv.get("general.name")),
        "size_label": _str(kv.get("general.size_label")),
        "n_params": meta.n_params if meta else None,
        "quantization": meta.quantization if meta else None,
        "file_type": _int(kv.get("general.file_type")),
        "context_length": _int(meta.arch_value("context_length")) if meta else None,
        "file_size": size,
        "shards": len(meta.shards) if meta else None,
        "n_tensors": len(meta.tensors) if meta else None,
        "start_of_turn": turns.get("<start_of_turn>"),
        "end_of_turn": turns.get("<end_of_turn>"),
        "turn_tokens": len(turns) == 2 if meta else None,
        "softcapping": meta.softcapping if meta else None,
        "kind": entry_kind(entry).kind,
    }


def entry_kind(entry: ModelEntry) -> ModelKind:
    """Whether the entry is a base or an instruction-tuned model (see
    :mod:`gemma_chat.models.kind`); the demo model is known to be a base model before
    it is assembled."""
    if entry.meta is not None:
        return kind_of_metadata(entry.meta.kv, entry.path.name)
    if entry.source == "demo":
        return ModelKind("base", "the demo model is Gemma 3 270M, a base model")
    return classify(names=(entry.path.name,), metadata_read=False)


def _file_size(entry: ModelEntry) -> int | None:
    try:
        return entry.path.stat().st_size if entry.assembled else None
    except OSError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def alias_path(target: str) -> Path:
    """An alias's file: ``~`` expanded, relative paths taken from the config's folder."""
    path = Path(target).expanduser()
    return path if path.is_absolute() else paths.config_dir() / path


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, found the way ``huggingface_hub`` finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _candidates(settings: Settings) -> Iterator[ModelEntry]:
    for path in _gguf_files(paths.models_dir(settings.models_dir)):
        yield ModelEntry(path, "models-dir", path.name)
    for value in settings.model_paths:
        yield from _config_path(value)
    for alias, target in settings.aliases.items():
        path = alias_path(target)
        error = (
            None if _is(path, "is_file") else f"alias {alias!r} points at a missing file: {path}"
        )
        yield ModelEntry(path, "alias", alias, error=error)
    yield from _hf_cache(hf_hub_cache())
    demo = _demo_entry()
    if demo is not None:
        yield demo


def _config_path(value: str) -> Iterator[ModelEntry]:
    path = alias_path(value)
    if _is(path, "is_dir"):
        for found in _gguf_files(path):
            yield ModelEntry(found, "config", found.name)
    elif _is(path, "is_file"):
        yield ModelEntry(path, "config", path.name)
    else:
        yield ModelEntry(path, "config", path.name, error=f"model_paths entry not found: {path}")


def _gguf_files(folder: Path, depth: int = MAX_DEPTH) -> Iterator[Path]:
    """GGUF files under ``folder`` (first shards only), sorted, hidden entries skipped."""
    try:
        children = sorted(folder.iterdir())
    except OSError:  # missing, not a folder, or unreadable: nothing to list
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if _is(child, "is_dir") and not child.is_symlink():
            if depth > 1:
                yield from _gguf_files(child, depth - 1)
        elif _is_first_shard(child):
            yield child


def _is_first_shard(path: Path) -> bool:
    if not path.name.lower().endswith(".gguf"):
        return False
    match = SHARD_RE.match(path.name)
    return match is None or int(match["no"]) == 1


def _hf_cache(root: Path) -> Iterator[ModelEntry]:
    try:
        repos = sorted(root.glob("models--*"))
    except OSError:
        return
    for repo_dir in repos:
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")
        seen: set[str] = set()
        for snapshot in _snapshots(repo_dir):
            for path in _gguf_links(snapshot):
                relative = path.relative_to(snapshot).as_posix()
                if relative in seen:  # an older revision of a file already listed
                    continue
                seen.add(relative)
                broken = not _is(path, "exists")
                error = f"broken link in the Hugging Face cache: {path}" if broken else None
                yield ModelEntry(path, "hf-cache", path.name, repo=repo, error=error)


def _snapshots(repo_dir: Path) -> list[Path]:
    """The repository's snapshots: those a ref (``main`` first) points at, then newest."""
    refs = []
    for ref in ["main", *sorted(p.name for p in _listdir(repo_dir / "refs") if p.name != "main")]:
        try:
            # Bounded and never blocking: the cache is a folder the user chooses, and a
            # FIFO or a huge file there must not hang or exhaust `models`.
            data = read_regular_file(repo_dir / "refs" / ref, REF_LIMIT)
        except OSError:
            continue
        refs.append(data.decode("utf-8", errors="replace").strip())
    snapshots = [p for p in _listdir(repo_dir / "snapshots") if _is(p, "is_dir")]

    def order(snapshot: Path) -> tuple[int, float]:
        rank = refs.index(snapshot.name) if snapshot.name in refs else len(refs)
        try:
            return rank, -snapshot.stat().st_mtime
        except OSError:
            return rank, 0.0

    return sorted(snapshots, key=order)


def _gguf_links(snapshot: Path, depth: int = MAX_DEPTH) -> Iterator[Path]:
    # Snapshot files are symlinks into blobs/: list them even when broken.
    for child in sorted(_listdir(snapshot)):
        if _is(child, "is_dir"):
            if depth > 1:
                yield from _gguf_links(child, depth - 1)
        elif _is_first_shard(child):
            yield child


def _is(path: Path, check: str) -> bool:
    """``path.is_dir()`` and the like, False where the check itself fails (permissions)."""
    try:
        return bool(getattr(path, check)())
    except OSError:
        return False


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _demo_entry() -> ModelEntry | None:
    from gemma_chat.models.demo import assembled_demo, demo_target

    target = demo_target()
    if target is None:
        return None
    assembled = assembled_demo() is not None
    return ModelEntry(target, "demo", DEMO_NAME, assembled=assembled)


def _identity(path: Path) -> object:
    """The same file, however it is reached (symlink, hard link, ``..``)."""
    try:
        stat = path.stat()
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return str(path.absolute())
