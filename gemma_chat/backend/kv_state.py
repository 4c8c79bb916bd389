"""State files: one llama.cpp sequence's KV cache plus the token ids it holds.

Layout (little-endian)::

    magic b"GCKVSTAT" | u32 version | u32 n_tokens | u64 state size | u32 crc32 | 4 zero bytes
    n_tokens x i32 token ids
    the state of sequence 0, as ``llama_state_seq_get_data`` writes it

The crc32 covers the token ids and the state, so a damaged file is refused before
llama.cpp sees it.

Why not the ready-made APIs:

* ``Llama.save_state`` also copies ``scores`` (n_ctx x n_vocab floats: about 2 GB for
  Gemma's 262k vocabulary at an 8k context) and keeps everything in memory.
* ``llama_state_seq_load_file`` aborts the whole process (``GGML_ASSERT(nread <=
  state_size)``) on a truncated file (seen). The buffer API checks every read against the
  buffer's end and returns 0 instead (seen: truncated, damaged and other-model states).

The file is memory-mapped on both sides, so neither a save nor a restore holds a second
copy of the state in memory (a 9B model's 8k-token state is about 2.7 GB).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import llama_cpp

from gemma_chat.backend.base import StateError
from gemma_chat.files import open_regular

MAGIC = b"GCKVSTAT"
VERSION = 1
SEQ_ID = 0  # llama-cpp-python puts every token into sequence 0
_HEADER = struct.Struct("<8sIIQI4x")
_ZEROS = bytes(1 << 20)


def state_size(ctx: llama_cpp.llama_context_p, n_tokens: int) -> int:
    """The size of the file :func:`write_state` would write now, in bytes."""
    return _HEADER.size + 4 * n_tokens + int(llama_cpp.llama_state_seq_get_size(ctx, SEQ_ID))


def write_state(ctx: llama_cpp.llama_context_p, path: Path, tokens: Sequence[int]) -> int:
    """Write sequence 0's state and its token ids to ``path``; return the file size.

    Raises:
        StateError: llama.cpp wrote less than it announced.
        OSError: The file could not be written (e.g. the disk is full).
    """
    size = int(llama_cpp.llama_state_seq_get_size(ctx, SEQ_ID))
    ids = _pack(tokens)
    offset = _HEADER.size + len(ids)
    total = offset + size
    with open(path, "w+b") as file:
        # Reserve the blocks first: a write into a mapped page that the disk cannot hold
        # is a SIGBUS, which kills the process, where this raises ENOSPC.
        _reserve(file, total)
        with mmap.mmap(file.fileno(), total) as mapped:
            mapped[_HEADER.size : offset] = ids
            buffer = (ctypes.c_uint8 * size).from_buffer(mapped, offset)
            try:
                written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ_ID))
            finally:
                del buffer  # the mapping cannot close while a ctypes view is alive
            if written != size:
                raise StateError(f"llama.cpp wrote {written} of {size} state bytes")
            with memoryview(mapped) as whole, whole[_HEADER.size :] as body:
                crc = zlib.crc32(body)
            # No msync: a crash leaves the pages to the kernel, and what a power cut may
            # lose fails the checksum on load. It is a cache; saving must stay quick.
            mapped[: _HEADER.size] = _HEADER.pack(MAGIC, VERSION, len(tokens), size, crc)
    return total


def read_tokens(path: Path) -> list[int]:
    """The token ids a state file holds (reads only the header and the ids).

    Raises:
        StateError: Not a state file of this version, or truncated.
        OSError: The file cannot be read, or is not a regular file (a FIFO would block).
    """
    with open_regular(path) as file:
        n_tokens, _, _ = _check_header(file.read(_HEADER.size), os.fstat(file.fileno()).st_size)
        return _unpack(file.read(4 * n_tokens))


def load_state(ctx: llama_cpp.llama_context_p, path: Path) -> list[int]:
    """Load a state file into sequence 0 and return its token ids.

    The caller clears the sequence first and again when this raises: llama.cpp may have
    filled part of it before it gave up.

    Raises:
        StateError: The file is damaged, or llama.cpp refused the state (another model,
            another cache layout, too small a context).
        OSError: The file cannot be read, or is not a regular file (a FIFO would block).
    """
    with open_regular(path) as file:
        file_size = os.fstat(file.fileno()).st_size
        n_tokens, size, crc = _check_header(file.read(_HEADER.size), file_size)
        # ACCESS_COPY gives the writable buffer ctypes needs without touching the file.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
            offset = _HEADER.size + 4 * n_tokens
            with memoryview(mapped) as whole, whole[_HEADER.size :] as body:
                if zlib.crc32(body) != crc:
                    raise StateError("the state file is damaged (checksum mismatch)")
            tokens = _unpack(mapped[_HEADER.size : offset])
            buffer = (ctypes.c_uint8 * size).from_buffer(mapped, offset)
            try:
                read = int(llama_cpp.llama_state_seq_set_data(ctx, buffer, size, SEQ_ID))
            finally:
                del buffer
    if read != size:
        raise StateError("llama.cpp refused the saved state (another model or cache layout)")
    return tokens


def _check_header(head: bytes, file_size: int) -> tuple[int, int, int]:
    if len(head) < _HEADER.size:
        raise StateError("the state file is truncated")
    magic, version, n_tokens, size, crc = _HEADER.unpack(head)
    if magic != MAGIC:
        raise StateError("not a gemma-chat state file")
    if version != VERSION:
        raise StateError(f"state file version {version}; this gemma-chat reads {VERSION}")
    if file_size != _HEADER.size + 4 * n_tokens + size:
        raise StateError("the state file is truncated or has extra bytes")
    return n_tokens, size, crc


def _pack(tokens: Sequence[int]) -> bytes:
    ids = array("i", tokens)
    if sys.byteorder == "big":  # pragma: no cover - the format is little-endian
        ids.byteswap()
    return ids.tobytes()


def _unpack(data: bytes) -> list[int]:
    ids = array("i")
    ids.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        ids.byteswap()
    return ids.tolist()


def _reserve(file: BinaryIO, size: int) -> None:
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(file.fileno(), 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # unsupported here
                raise
    # No fallocate (macOS, Windows, some filesystems): writing zeros allocates the blocks.
    left = size
    while left > 0:
        left -= file.write(_ZEROS[: min(left, len(_ZEROS))])
    file.flush()
