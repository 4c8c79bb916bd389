"""Bounded reads of files whose path a user can choose, and file identities for caches.

A path from the config or the command line may name anything: ``/dev/zero`` (endless),
a FIFO (an ``open`` that blocks until a writer comes, forever), a device, a 5 GB file.
Every such read goes through :func:`open_regular` or :func:`read_regular_file`, which
open without blocking, accept only a regular file and read at most a limit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gemma_chat.units import format_bytes

# O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; it has
# no effect on a regular file's reads. Windows has neither FIFOs nor the flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_OPEN_FLAGS |= getattr(os, "O_BINARY", 0)
_CHUNK = 8 * 1024 * 1024


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory, not a regular file."""

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(errno.EINVAL, "not a regular file", str(path))


class FileTooLarge(OSError):
    """The file is larger than the caller's limit."""

    def __init__(self, path: str | os.PathLike[str], limit: int):
        super().__init__(errno.EFBIG, f"larger than {format_bytes(limit)}", str(path))
        self.limit = limit


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for binary reading without ever blocking on the open.

    Raises:
        NotRegularFile: The path is a FIFO, a device, a socket or a directory.
        OSError: The file cannot be opened (FileNotFoundError when it does not exist).
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a whole regular file of at most ``limit`` bytes.

    Args:
        path: The file.
        limit: The most bytes it may hold; a larger file is refused, never truncated.

    Raises:
        NotRegularFile: The path is not a regular file (a FIFO, ``/dev/zero``, ...).
        FileTooLarge: The file holds more than ``limit`` bytes.
        OSError: The file cannot be read (FileNotFoundError when it does not exist).
    """
    with open_regular(path) as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise FileTooLarge(path, limit)
        # Read one byte past the limit: the file may have grown since the fstat.
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, limit)
    return data


def sha256_file(
    path: str | os.PathLike[str], on_read: Callable[[int], object] | None = None
) -> str:
    """The sha256 of a regular file of any size, read in 8 MiB chunks.

    Args:
        path: The file (a model: gigabytes are expected, so no size limit).
        on_read: Called with each chunk's length (a progress bar).

    Raises:
        NotRegularFile: The path is a FIFO, a device, a socket or a directory.
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if on_read is not None:
                on_read(len(chunk))
    return digest.hexdigest()


def file_version(path: Path) -> str:
    """A key that changes whenever the file at ``path`` is replaced or rewritten.

    Size and mtime alone are not enough: both can be copied onto a different file
    (``os.utime``, ``touch -r``, ``cp -p``). The key adds the device and inode, which a
    replacement by rename cannot keep, and the inode's change time (ctime), which every
    write, truncate, rename or ``utime`` sets to the current time and which no system
    call can set back. So an in-place rewrite changes ctime and a new file changes the
    inode: a cached verdict about one file version is never applied to another. (A
    needless change, such as a ``chmod``, only costs one more check.)

    Raises:
        OSError: The file cannot be stat'ed.
    """
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}:{st.st_size}:{st.st_mtime_ns}"
