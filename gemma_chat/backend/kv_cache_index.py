"""The KV cache's sidecars: the small JSON record beside each saved state.

A sidecar says what its state is valid for (model sha256, runtime version, cache
layout), its token count and hash, its size and when it was saved and last used. It is
the entry's commit record: a state without one is never loaded (see
:mod:`gemma_chat.backend.kv_cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_chat.files import read_regular_file

SIDECAR_FORMAT = 1
SIDECAR_LIMIT = 64 * 1024  # a sidecar is a few hundred bytes


@dataclass(frozen=True)
class CacheEntry:
    """One saved state, as its sidecar describes it.

    Attributes:
        key: The conversation key it was saved under.
        n_tokens: Tokens the state holds.
        size: Bytes of the state file.
        model_sha256: The model it belongs to.
        saved_at: When it was saved (seconds since the epoch).
        used_at: When it was last saved or restored (drives the LRU eviction).
    """

    key: str
    n_tokens: int
    size: int
    model_sha256: str
    saved_at: float
    used_at: float


def tokens_hash(tokens: Sequence[int]) -> str:
    """sha256 of token ids (as little-endian int32), for the sidecar."""
    ids = array("i", tokens)
    if sys.byteorder == "big":  # pragma: no cover
        ids.byteswap()
    return hashlib.sha256(ids.tobytes()).hexdigest()


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's record, or None for anything unusable: missing, damaged, too
    large, nested too deeply, or not a regular file (a FIFO would block forever)."""
    try:
        meta = json.loads(read_regular_file(path, SIDECAR_LIMIT).decode("utf-8"))
        entry_of(meta)  # every field there, with the right types
        if meta.get("format") != SIDECAR_FORMAT or not isinstance(meta.get("backend"), dict):
            return None
        return meta
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def write_sidecar(path: Path, meta: dict[str, Any]) -> None:
    """Write a sidecar through a rename, so a reader sees the old one or the new one."""
    temp = temp_path(path)
    try:
        temp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def touch(sidecar_path: Path, meta: dict[str, Any]) -> None:
    """Mark an entry as just used (the LRU order); a failure only costs that order."""
    with contextlib.suppress(OSError):  # only the LRU order suffers
        write_sidecar(sidecar_path, {**meta, "used_at": time.time()})


def temp_path(final: Path) -> Path:
    """A unique hidden temporary name beside ``final`` (cleaned up when stale)."""
    return final.with_name(f".{final.stem}.{uuid.uuid4().hex}.tmp")


def entry_of(meta: dict[str, Any]) -> CacheEntry:
    """The entry a sidecar record describes.

    Raises:
        KeyError, TypeError, ValueError: A field is missing or has the wrong type.
    """
    entry = CacheEntry(
        key=str(meta["key"]),
        n_tokens=int(meta["n_tokens"]),
        size=int(meta["size"]),
        model_sha256=str(meta["model_sha256"]),
        saved_at=float(meta["saved_at"]),
        used_at=float(meta["used_at"]),
    )
    if not isinstance(meta["tokens_sha256"], str):
        raise TypeError("tokens_sha256")
    return entry
