"""The file work behind ``gemma-chat pull``: resumable transfer, sha256 check, install.

Why ``pull`` does its own transfer instead of calling ``hf_hub_download``: in
huggingface_hub 2.4, ``hf_hub_download`` writes each download to a process-unique
``<etag>.<random>.incomplete`` file and deletes it when the download fails
(``_download_to_tmp_and_move``; upstream issue huggingface/huggingface_hub#4196), so an
interrupted multi-GB download starts again from zero. Its ``http_get`` still resumes
with an HTTP Range request when given the bytes already on disk, so ``pull`` keeps the
partial file under a stable name and hands it back on the next run.

Nothing half-valid is ever installed: the partial file is hidden (``.NAME.<sha>.partial``,
not a ``.gguf``), it becomes the model file only after its sha256 matched the Hub's,
and a mismatch deletes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from gemma_chat import files
from gemma_chat.errors import GemmaChatError
from gemma_chat.units import format_bytes

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REF_LIMIT = 4096  # a Hugging Face cache ref holds one commit hash


class ChecksumMismatch(GemmaChatError):
    """A file's sha256 differs from the one the Hub publishes for it."""


def sha256_file(path: Path, *, progress: bool = False, label: str = "") -> str:
    """The sha256 of a file, with a progress bar when ``progress`` is True."""
    from huggingface_hub.utils import tqdm

    with tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        desc=f"verifying {label or path.name}",
        disable=not progress,
        name="gemma_chat.pull.download",
    ) as bar:
        return files.sha256_file(path, bar.update)


def expected_sha256(etag: str | None) -> str | None:
    """The sha256 an etag stands for, or None.

    For files stored with Git LFS (every GGUF on the Hub) the Hub's ``X-Linked-Etag`` is
    the file's sha256, and huggingface_hub names cache blobs after it.
    """
    return etag if etag and SHA256_RE.match(etag) else None


def verify(path: Path, expected: str | None, *, progress: bool, label: str) -> str:
    """Check a file against the Hub's sha256.

    Returns:
        The file's sha256.

    Raises:
        ChecksumMismatch: It differs from ``expected`` (the caller deletes the file).
    """
    actual = sha256_file(path, progress=progress, label=label)
    if expected is not None and actual != expected:
        raise ChecksumMismatch(
            f"{label}: sha256 {actual[:12]}… does not match the Hub's {expected[:12]}…"
        )
    return actual


def partial_path(final: Path, version: str) -> Path:
    """Where the download of ``final`` (one version of it) collects its bytes."""
    return final.with_name(f".{final.name}.{version[:16]}.partial")


def download(
    url: str,
    final: Path,
    *,
    version: str,
    size: int | None,
    headers: dict[str, str],
    notify: Callable[[str], None],
) -> Path:
    """Download ``url`` into the partial file for ``final``, resuming what is there.

    Args:
        url: Where the bytes are (the Hub's resolve URL or the CDN it redirects to).
        final: The model file this download is for; it is not written here.
        version: The file's sha256 (or commit): partials of other versions are deleted.
        size: The expected size, when the Hub said.
        headers: Request headers (authorization, user agent).
        notify: Receives one-line progress notes.

    Returns:
        The partial file, complete (the caller verifies and installs it).
    """
    partial = partial_path(final, version)
    for stale in final.parent.glob(f".{final.name}.*.partial"):
        if stale != partial:
            stale.unlink(missing_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    done = partial.stat().st_size if partial.exists() else 0
    if size is not None and done > size:  # not this version after all: start over
        partial.unlink()
        done = 0
    _check_space(final.parent, (size or 0) - done)
    if done:
        notify(f"resuming {final.name} at {_gb(done)} of {_gb(size)}")
    try:
        with partial.open("ab") as handle:
            _fetch(url, handle, done, size, headers, final.name, notify)
    except BaseException:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()  # nothing to resume from
        raise
    return partial


def _fetch(
    url: str,
    handle: BinaryIO,
    done: int,
    size: int | None,
    headers: dict[str, str],
    name: str,
    notify: Callable[[str], None],
) -> None:
    from huggingface_hub.file_download import http_get

    try:
        # http_get sends `Range: bytes=<done>-` and appends; should the server ignore the
        # range, it truncates back to what this call started from. It writes in 10 MiB
        # pieces, so an interruption loses at most the piece in flight.
        http_get(
            url,
            handle,
            resume_size=done,
            headers=headers,
            expected_size=size,
            displayed_filename=name,
        )
    except KeyboardInterrupt:
        handle.flush()
        notify(f"stopped: {_gb(handle.tell())} of {name} kept; run the same pull again to resume")
        raise


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise GemmaChatError(
            f"not enough disk space in {folder}: the download needs {_gb(needed)} more, "
            f"{_gb(free)} is free"
        )


def _gb(size: int | None) -> str:
    return "an unknown size" if size is None else format_bytes(size)


def install(source: Path, final: Path, *, move: bool) -> str:
    """Put ``source`` at ``final`` atomically (replacing what is there).

    A finished download is moved. A file from the Hugging Face cache is hard-linked
    (no second copy, and it survives a cache clean-up), else symlinked (another
    filesystem), else copied.

    Returns:
        How: ``"moved"``, ``"hardlink"``, ``"symlink"`` or ``"copy"``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(source, final)
        return "moved"
    temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        how = _link(source, temp)
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return how


def _link(source: Path, temp: Path) -> str:
    temp.unlink(missing_ok=True)
    try:
        os.link(source.resolve(), temp)
        return "hardlink"
    except OSError:
        pass
    try:
        temp.symlink_to(source.absolute())
        return "symlink"
    except OSError:
        pass
    shutil.copyfile(source, temp)
    return "copy"


def same_content(existing: Path, other: Path) -> bool:
    """Whether two paths are the same file (one inode, or one symlink target)."""
    with contextlib.suppress(OSError):
        return os.path.samefile(existing, other)
    return False


def cached_files(cache_dir: Path, repo: str, revision: str | None) -> tuple[str, list[str]]:
    """The files the Hugging Face cache holds for a repository revision.

    Reads huggingface_hub's documented layout: ``models--org--name/refs/<branch>`` holds
    the commit, ``snapshots/<commit>/`` the files.

    Returns:
        The commit and the files' paths inside the repository ("" and [] when absent).
    """
    folder = cache_dir / f"models--{repo.replace('/', '--')}"
    commit = revision or "main"
    ref = folder / "refs" / commit
    with contextlib.suppress(OSError):  # bounded, and a FIFO there cannot block
        commit = files.read_regular_file(ref, REF_LIMIT).decode("utf-8", "replace").strip()
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return "", []
    return commit, sorted(_relative_files(snapshot))


def _relative_files(snapshot: Path) -> Iterator[str]:
    for path in snapshot.rglob("*"):
        if path.is_file():
            yield path.relative_to(snapshot).as_posix()
