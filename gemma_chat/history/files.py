"""The files the history reads and writes besides its database: export targets and
import sources.

* An export never replaces one of gemma-chat's own files (the database and its ``-wal``
  and ``-shm``, the config file, anything in the cache folder, which holds the KV state),
  however the path is spelled: symlinks and hard links are followed by comparing files
  (device and inode), and files that do not exist yet by their resolved path.
* An export is written atomically: a temporary file in the same folder, flushed to disk,
  then renamed over the target, so a failed write never leaves half a file. An existing
  file is only replaced with ``--force``.
* An import reads at most :data:`MAX_IMPORT_BYTES`, and only from a regular file or
  stdin: a FIFO or a device is refused before anything is read.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from gemma_chat import paths
from gemma_chat.backend import kv_cache as state_cache
from gemma_chat.config import ui_prefs
from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.files import FileTooLarge, NotRegularFile, read_regular_file
from gemma_chat.units import format_bytes

MAX_IMPORT_BYTES = 64 * 1024 * 1024
"""The largest export ``history import`` reads (64 MiB: many times a long conversation
with its token ids)."""


# ------------------------------------------------------------------------- export


def write_export(target: Path, text: str, store_path: Path, *, force: bool = False) -> None:
    """Write an export to ``target``.

    Args:
        target: Where, as the user gave it.
        text: The export.
        store_path: The history database in use (its files are refused).
        force: Replace an existing regular file.

    Raises:
        UsageError: ``target`` is one of gemma-chat's own files, a folder, or an
            existing file without ``force``.
        GemmaChatError: It cannot be written.
    """
    refuse_own_file(target, store_path)
    try:
        found = target.stat()
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise GemmaChatError(f"cannot write {target}: {exc.strerror or exc}") from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise UsageError(f"cannot write {target}: it is a folder")
    if found is not None and not stat.S_ISREG(found.st_mode):
        # A terminal, a pipe or a device (-o /dev/stdout): nothing to replace.
        _write_through(target, text)
        return
    if found is not None and not force:
        raise UsageError(f"{target} already exists; pass --force to replace it")
    _write_atomically(Path(os.path.realpath(target)), text, found)


def refuse_own_file(target: Path, store_path: Path) -> None:
    """Raise :class:`UsageError` when ``target`` is one of gemma-chat's own files."""
    real = Path(os.path.realpath(target))
    for folder, what in _own_folders():
        own = Path(os.path.realpath(folder))
        if real == own or own in real.parents:
            raise UsageError(f"not writing an export to {target}: it is in gemma-chat's {what}")
    try:
        found = os.stat(target)
    except OSError:
        found = None
    for own, what in _own_files(store_path):
        same = os.path.realpath(own) == str(real)
        if not same and found is not None:
            with suppress(OSError):
                mine = os.stat(own)
                same = (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino)
        if same:
            raise UsageError(f"not writing an export to {target}: it is {what} {own}")


def _own_folders() -> Iterator[tuple[Path, str]]:
    yield paths.cache_dir(), "cache folder"
    # Downloaded models: --force would replace gigabytes with a transcript.
    yield paths.models_dir(), "models folder"
    yield paths.config_dir() / "themes", "themes folder"


def _own_files(store_path: Path) -> Iterator[tuple[Path, str]]:
    yield store_path, "the history database"
    for suffix in ("-wal", "-shm"):
        yield store_path.with_name(store_path.name + suffix), "a file of the history database"
    yield paths.config_file(), "the config file"
    yield ui_prefs.state_file(), "the app's state file"
    # A hard link to a KV state file can live outside the cache folder.
    with suppress(OSError), os.scandir(state_cache.cache_dir()) as entries:
        for entry in entries:
            yield Path(entry.path), "a KV cache file"


def _write_through(target: Path, text: str) -> None:
    try:
        with open(target, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise GemmaChatError(f"cannot write {target}: {exc.strerror or exc}") from None


def _write_atomically(real: Path, text: str, old: os.stat_result | None) -> None:
    """Write to a temporary file beside ``real``, fsync it, then rename it over ``real``."""
    try:
        fd, temp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as exc:
        raise GemmaChatError(f"cannot write {real}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private; give it the mode a plain write would have.
        os.chmod(temp, stat.S_IMODE(old.st_mode) if old else 0o666 & ~_umask())
        os.replace(temp, real)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temp)
        raise GemmaChatError(f"cannot write {real}: {exc.strerror or exc}") from None
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(real.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------- import


def read_import(source: str) -> tuple[str, str]:
    """The text of an export to import, from a file or ``-`` (stdin).

    Returns:
        The text, and how to name its source in messages.

    Raises:
        UsageError: Missing, not a regular file, larger than :data:`MAX_IMPORT_BYTES`,
            unreadable or not UTF-8.
    """
    if source == "-":
        return _read_stdin(), "stdin"
    return _read_file(Path(source)), source


def _read_stdin() -> str:
    binary = getattr(sys.stdin, "buffer", None)
    try:
        data = (binary or sys.stdin).read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read stdin: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError("stdin is not UTF-8 text") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise UsageError(
            f"stdin holds more than {format_bytes(MAX_IMPORT_BYTES)}, the most an import reads"
        )
    return _decode(data, "stdin") if isinstance(data, bytes) else data


def _read_file(path: Path) -> str:
    try:
        data = read_regular_file(path, MAX_IMPORT_BYTES)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except NotRegularFile:
        raise UsageError(f"{path} is not a regular file") from None
    except FileTooLarge:
        raise UsageError(
            f"{path} is larger than {format_bytes(MAX_IMPORT_BYTES)}, the most an import reads"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _decode(data, str(path))


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
