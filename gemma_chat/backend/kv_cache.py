"""The KV state cache: reopen a long conversation without re-evaluating its history.

One entry per conversation (keyed by the stored conversation's uuid) in
``<cache dir>/kv``: ``<key>.kv``, the llama.cpp KV state and its token ids (see
``gemma_chat.backend.kv_state``), and ``<key>.json``, a small sidecar with what the state
is valid for (model sha256, runtime version, cache layout), its token count and hash,
its size and when it was saved and last used.

The sidecar is the commit record. A save writes the state to a temporary file, removes
the old sidecar, renames the state into place and then writes the new sidecar (also
through a rename), so a crash at any point leaves either a complete entry or one
without a sidecar, which is never loaded and is cleaned up later.

A cache must never stop a chat: every failure becomes a ``False``/``0`` result with the
reason in :attr:`KVStateCache.last_reason`, and the prompt is then evaluated as usual.

Typical use (in the inference worker: saving and restoring block, and neither may run
during a generation)::

    cache = KVStateCache(settings.state_cache)
    cache.restore(backend, record.uuid, model.sha256, resume_ids(engine.template, conv))
    ...  # chat
    cache.save(backend, record.uuid, model.sha256, resume_ids(engine.template, conv))
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gemma_chat import paths
from gemma_chat.backend.base import StateError, StatefulBackend, common_prefix
from gemma_chat.backend.kv_cache_index import (
    SIDECAR_FORMAT,
    CacheEntry,
    entry_of,
    read_sidecar,
    temp_path,
    tokens_hash,
    touch,
    write_sidecar,
)
from gemma_chat.config.settings import KVCacheSettings
from gemma_chat.units import format_bytes

if TYPE_CHECKING:
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.chat.template import GemmaTemplate

MB = 1024 * 1024
STALE_TEMP_S = 3600.0  # a temporary file this old belongs to a save that died
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def cache_dir() -> Path:
    """Where the saved states live: ``<cache dir>/kv``."""
    return paths.cache_dir() / "kv"


def resume_ids(template: GemmaTemplate, conversation: Conversation) -> list[int]:
    """The token ids every next prompt of ``conversation`` starts with.

    That is the rendered conversation without the trailing generation prompt when the
    last turn is the model's (the next prompt continues with a user turn instead); with
    a pending user turn the whole rendered prompt.
    """
    ids = template.render(conversation.turns, conversation.system)
    if conversation.pending_user is None:
        ids = ids[: len(ids) - len(template.generation_prompt())]
    return ids


class KVStateCache:
    """Saves and restores the backend's KV state per conversation, size-bounded (LRU).

    Attributes:
        settings: The ``[state_cache]`` settings (read at every call).
        directory: Where the files live.
        last_reason: Why the last call did what it did (shown in debug output).
    """

    def __init__(self, settings: KVCacheSettings | None = None, directory: Path | None = None):
        self.settings = settings or KVCacheSettings()
        self.directory = directory or cache_dir()
        self.last_reason = ""

    def save(
        self,
        backend: object,
        key: str,
        model_sha256: str | None,
        expected_ids: Sequence[int] | None = None,
    ) -> bool:
        """Save the backend's KV state as ``key``'s entry, then evict down to ``max_mb``.

        Args:
            backend: The loaded model (a backend without the state capability is skipped).
            key: The conversation's uuid.
            model_sha256: The model file's sha256 (``ModelInfo.sha256``); None skips.
            expected_ids: The conversation's :func:`resume_ids`. When given, only the
                prefix the KV cache shares with them is saved (a state must end where
                the next prompt goes on), and nothing if that prefix is short: the
                cache then holds another conversation.

        Returns:
            True when an entry for the current state exists afterwards.
        """
        try:
            return self._save(backend, key, model_sha256, expected_ids)
        except Exception as exc:  # a cache must never stop a chat
            return self._fail(f"save failed: {_describe(exc)}")

    def restore(
        self, backend: object, key: str, model_sha256: str | None, history_ids: Sequence[int]
    ) -> int:
        """Load ``key``'s saved state into the backend if it fits this conversation.

        It is used only when the model and runtime match and the saved tokens share at
        least ``min_tokens`` with ``history_ids``; only that shared prefix is kept.

        Args:
            backend: The loaded model.
            key: The conversation's uuid.
            model_sha256: The loaded model file's sha256; None skips.
            history_ids: The conversation's :func:`resume_ids`.

        Returns:
            Prompt tokens the next reply will not evaluate (0: nothing usable, and the
            prompt is evaluated as usual).
        """
        try:
            return self._restore(backend, key, model_sha256, history_ids)
        except Exception as exc:  # a cache must never stop a chat
            return self._refuse(f"restore failed: {_describe(exc)}")

    def forget(self, key: str) -> bool:
        """Delete ``key``'s entry (when its conversation is deleted). True if one existed."""
        try:
            found = [path.exists() for path in self._paths(key)]
            for path in self._paths(key):
                path.unlink(missing_ok=True)
            return any(found)
        except OSError as exc:
            return self._fail(f"could not delete the saved state: {_describe(exc)}")

    def entries(self) -> list[CacheEntry]:
        """Every complete entry, least recently used first."""
        found = []
        for sidecar in self._sidecars():
            meta = read_sidecar(sidecar)
            if meta is not None:
                found.append(entry_of(meta))
        return sorted(found, key=lambda entry: entry.used_at)

    def total_bytes(self) -> int:
        """Disk space the cache takes, every file counted."""
        total = 0
        for path in self._files():
            with contextlib.suppress(OSError):  # deleted meanwhile
                total += path.stat().st_size
        return total

    # -- the work ----------------------------------------------------------------------

    def _save(
        self, backend: object, key: str, model_sha256: str | None, expected: Sequence[int] | None
    ) -> bool:
        settings = self.settings
        if not settings.enabled or settings.max_mb == 0:
            return self._fail("the state cache is off")
        if not isinstance(backend, StatefulBackend):
            return self._fail("this backend cannot save its state")
        if not model_sha256:  # without it a state could be loaded into another model
            return self._fail("the model's sha256 is unknown")
        tokens = backend.cached_tokens
        if expected is not None:
            tokens = tokens[: common_prefix(tokens, expected)]
            if len(tokens) < settings.min_tokens <= len(expected):
                return self._fail("the model's cache does not hold this conversation")
        if len(tokens) < settings.min_tokens:
            return self._fail(f"{len(tokens)} tokens, fewer than min_tokens")
        state_path, sidecar_path = self._paths(key)
        old = read_sidecar(sidecar_path) or {}
        signature = backend.state_signature
        current = {
            "model_sha256": model_sha256,
            "backend": signature,
            "tokens_sha256": tokens_hash(tokens),
            "size": _size(state_path),
        }
        if all(old.get(name) == value for name, value in current.items()):
            touch(sidecar_path, old)
            self.last_reason = f"unchanged since the last save ({len(tokens)} tokens)"
            return True
        if backend.state_size() > settings.max_mb * MB:
            return self._fail(f"the state alone is larger than max_mb ({settings.max_mb} MB)")
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = temp_path(state_path)
        try:
            saved = backend.save_state(temp, expected)
            if saved == 0:
                return self._fail("the model's cache is empty")
            saved_tokens = backend.state_tokens(temp)
            size = temp.stat().st_size
            # Commit: the old sidecar goes first, so it can never describe the new file.
            sidecar_path.unlink(missing_ok=True)
            os.replace(temp, state_path)
        finally:
            temp.unlink(missing_ok=True)
        stamp = time.time()
        meta = {
            "format": SIDECAR_FORMAT,
            "key": key,
            "model_sha256": model_sha256,
            "backend": signature,
            "n_ctx": getattr(getattr(backend, "info", None), "n_ctx", None),
            "n_tokens": len(saved_tokens),
            "tokens_sha256": tokens_hash(saved_tokens),
            "size": size,
            "saved_at": stamp,
            "used_at": stamp,
        }
        write_sidecar(sidecar_path, meta)
        with contextlib.suppress(OSError):  # saved; the next save retries the clean-up
            self._evict(keep=sidecar_path)
        self.last_reason = f"saved {len(saved_tokens)} tokens ({format_bytes(size)})"
        return True

    def _restore(
        self, backend: object, key: str, model_sha256: str | None, history: Sequence[int]
    ) -> int:
        settings = self.settings
        if not settings.enabled:
            return self._refuse("the state cache is off")
        if not isinstance(backend, StatefulBackend):
            return self._refuse("this backend cannot restore a state")
        if not model_sha256:
            return self._refuse("the model's sha256 is unknown")
        state_path, sidecar_path = self._paths(key)
        meta = read_sidecar(sidecar_path)
        if meta is None:
            return self._refuse("no saved state for this conversation")
        if meta["model_sha256"] != model_sha256:
            return self._refuse("the saved state belongs to another model")
        if meta["backend"] != backend.state_signature:
            return self._refuse("the saved state is from another llama.cpp or cache layout")
        n_ctx = getattr(getattr(backend, "info", None), "n_ctx", None)
        if n_ctx is not None and meta["n_tokens"] > n_ctx:
            return self._refuse("the saved state is longer than the context")
        if _size(state_path) != meta["size"]:
            self.forget(key)
            return self._refuse("the saved state file is missing or truncated; deleted")
        try:
            saved = backend.state_tokens(state_path)
            if len(saved) != meta["n_tokens"] or tokens_hash(saved) != meta["tokens_sha256"]:
                raise StateError("the saved state does not match its record")
            shared = common_prefix(saved, history)
            if shared < settings.min_tokens:
                return self._refuse(f"only {shared} tokens match the conversation")
            held = common_prefix(backend.cached_tokens, history)
            restored = backend.restore_state(state_path, history, settings.min_tokens)
        except StateError as exc:
            self.forget(key)  # damaged or refused by llama.cpp: never try it again
            return self._refuse(f"{exc}; deleted the saved state")
        if restored == 0:
            return self._refuse(
                "the conversation changed inside the saved state, which can continue only "
                "from its end (sliding-window attention)"
            )
        touch(sidecar_path, meta)
        if restored == held:
            self.last_reason = f"{held} tokens were already in the model's cache"
        else:
            self.last_reason = f"restored {restored} of {len(saved)} saved tokens"
        return restored

    def _evict(self, keep: Path) -> None:
        """Delete stale temporary files and orphans, then the least recently used entries
        until the cache fits ``max_mb``. The entry just saved is kept."""
        now = time.time()
        referenced = set()
        for sidecar in self._sidecars():
            if read_sidecar(sidecar) is None:
                sidecar.unlink(missing_ok=True)  # unreadable: its state is unusable
            else:
                referenced.add(sidecar.with_suffix(".kv"))
        for path in self._files():
            orphan = path.suffix == ".tmp" or (path.suffix == ".kv" and path not in referenced)
            # Recent ones may belong to a save in progress in another process.
            with contextlib.suppress(FileNotFoundError):  # another process was quicker
                if orphan and now - path.stat().st_mtime > STALE_TEMP_S:
                    path.unlink()
        limit = self.settings.max_mb * MB
        for entry in self.entries():
            if self.total_bytes() <= limit:
                break
            if self._paths(entry.key)[1] != keep:
                self.forget(entry.key)

    # -- files -------------------------------------------------------------------------

    def _paths(self, key: str) -> tuple[Path, Path]:
        stem = key if _SAFE_KEY.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()
        return self.directory / f"{stem}.kv", self.directory / f"{stem}.json"

    def _files(self) -> list[Path]:
        try:
            return [path for path in self.directory.iterdir() if path.is_file()]
        except OSError:
            return []

    def _sidecars(self) -> list[Path]:
        return [path for path in self._files() if path.suffix == ".json"]

    def _fail(self, reason: str) -> bool:
        self.last_reason = reason
        return False

    def _refuse(self, reason: str) -> int:
        self.last_reason = reason
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
