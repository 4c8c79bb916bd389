"""Fast, crash-proof GGUF metadata: key/values and tensor infos, without the tensor data.

The file is read by ggml's own GGUF parser (see :mod:`gemma_chat.models.gguf_native`) in a child
process, ``python -m gemma_chat.models.gguf_meta PATH...``, which prints one JSON line per file:
a malformed file can abort a native parser, and that must cost one line of output, not the
caller's process (a TUI would die with the terminal left broken). Results are cached in the
cache directory per file version (resolved path, size, mtime), so listing many multi-GB
models costs one directory scan after the first time.

A split model (``name-00001-of-00003.gguf``) is read through its first shard: the
returned :class:`GGUFMeta` holds every shard's tensors and their total size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma_chat import paths
from gemma_chat.errors import ModelError
from gemma_chat.files import file_version, read_regular_file
from gemma_chat.models.child import run_child

FORMAT_VERSION = 1  # bump when the child's output changes, to invalidate cached results
READ_TIMEOUT_S = 120
CACHE_LIMIT = 16 * 1024 * 1024  # a cached result is tens of KB (the tensor list)
CHILD_COMMAND = (sys.executable, "-m", "gemma_chat.models.gguf_meta")
"""The reader process; its arguments are the files."""
SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class ArraySummary:
    """A long array value (vocabulary, scores, merges), kept as its type and length."""

    type: str
    n: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's header: no data is read."""

    name: str
    ggml_type: int
    type_name: str
    n_bytes: int
    shape: tuple[int, ...]

    @property
    def n_elements(self) -> int:
        """The number of values (weights) in the tensor."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class GGUFMeta:
    """What a GGUF file says about itself.

    Attributes:
        path: The file (the first shard of a split model).
        file_size: Its size in bytes (all shards together).
        kv: Every key/value; arrays longer than the reader keeps are :class:`ArraySummary`.
        tensors: Every tensor's header (all shards).
        turn_tokens: The ids of ``<start_of_turn>``/``<end_of_turn>`` found among the
            vocabulary's control tokens.
        shards: Every shard's path, in order (one entry for a single-file model).
    """

    path: Path
    file_size: int
    kv: dict[str, Any]
    tensors: list[TensorInfo]
    turn_tokens: dict[str, int] = field(default_factory=dict)
    shards: tuple[Path, ...] = ()

    @property
    def architecture(self) -> str:
        """``general.architecture`` (``gemma2``, ``gemma3``, ...), or "" when missing."""
        value = self.kv.get("general.architecture")
        return value if isinstance(value, str) else ""

    def arch_value(self, suffix: str) -> Any:
        """The architecture-specific value ``<arch>.<suffix>``, or None."""
        return self.kv.get(f"{self.architecture}.{suffix}")

    @property
    def n_params(self) -> int:
        """``general.parameter_count`` when the file records it, else the tensors' sum."""
        recorded = self.kv.get("general.parameter_count")
        if isinstance(recorded, int) and recorded > 0:
            return recorded
        return sum(tensor.n_elements for tensor in self.tensors)

    @property
    def quantization(self) -> str | None:
        """The quantization name (``Q4_K_M``) from ``general.file_type``, via the gguf package."""
        file_type = self.kv.get("general.file_type")
        if not isinstance(file_type, int):
            return None
        try:
            from gguf import LlamaFileType  # imported late: it pulls in numpy

            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except (ImportError, ValueError):
            return None

    @property
    def softcapping(self) -> bool | None:
        """Whether a Gemma 2 file has both soft-capping keys; None for other architectures
        (only Gemma 2 soft-caps; an old conversion without the keys degrades)."""
        if self.architecture != "gemma2":
            return None
        wanted = ("attn_logit_softcapping", "final_logit_softcapping")
        return all(self.arch_value(suffix) is not None for suffix in wanted)

    @property
    def tensor_bytes(self) -> int:
        """The size of all tensor data (the weights' memory when loaded unchanged)."""
        return sum(tensor.n_bytes for tensor in self.tensors)


def read_gguf_meta(path: Path, *, use_cache: bool = True) -> GGUFMeta:
    """Read one GGUF file's metadata (see the module docstring).

    Raises:
        ModelError: The file is missing, not a GGUF, truncated, malformed, or crashed the
            reader; the message is one line.
    """
    result = read_many([path], use_cache=use_cache)[path]
    if isinstance(result, ModelError):
        raise result
    return result


def read_many(
    files: Sequence[Path], *, use_cache: bool = True
) -> dict[Path, GGUFMeta | ModelError]:
    """Read many files with one child process; a bad file fails alone.

    Returns:
        For each path given, its metadata or the :class:`ModelError` that explains why it
        could not be read.
    """

    wanted = list(dict.fromkeys(shard for path in files for shard in shard_paths(path)))
    raw: dict[Path, dict[str, Any] | ModelError] = {}
    for path in wanted:
        try:
            check_header(path)
        except ModelError as exc:
            raw[path] = exc
    raw.update(_read_raw([path for path in wanted if path not in raw], use_cache))
    return {path: _assemble(path, raw) for path in files}


def shard_paths(path: Path) -> list[Path]:
    """All shards of the split model whose first shard is ``path`` (else just ``path``)."""
    match = SHARD_RE.match(path.name)
    if not match or int(match["no"]) != 1:
        return [path]
    count = int(match["count"])
    width = len(match["no"])
    return [
        path.with_name(f"{match['prefix']}-{no:0{width}d}-of-{match['count']}.gguf")
        for no in range(1, count + 1)
    ]


def _assemble(path: Path, raw: dict[Path, dict[str, Any] | ModelError]) -> GGUFMeta | ModelError:
    first = raw.get(path)
    if isinstance(first, ModelError) or first is None:
        return first or ModelError(f"cannot read {path}")
    shards = shard_paths(path)
    parts = []
    for shard in shards:
        part = raw.get(shard) or ModelError(f"cannot read {shard}")
        if isinstance(part, ModelError):
            return ModelError(f"split model {path.name}: {part}")
        parts.append(part)
    return GGUFMeta(
        path=path,
        file_size=sum(part["file_size"] for part in parts),
        kv=decode_kv(first["kv"]),
        tensors=[
            TensorInfo(t["name"], t["ggml_type"], t["type_name"], t["n_bytes"], tuple(t["shape"]))
            for part in parts
            for t in part["tensors"]
        ],
        turn_tokens=dict(first["turn_tokens"]),
        shards=tuple(shards),
    )


def decode_kv(kv: dict[str, Any]) -> dict[str, Any]:
    """The child's JSON key/values, with long arrays as :class:`ArraySummary`."""
    return {
        key: ArraySummary(value["__array__"], value["n"])
        if isinstance(value, dict) and "__array__" in value
        else value
        for key, value in kv.items()
    }


def _read_raw(files: list[Path], use_cache: bool) -> dict[Path, dict[str, Any] | ModelError]:
    found: dict[Path, dict[str, Any] | ModelError] = {}
    todo = []
    for path in files:
        data = _load_cached(path) if use_cache else None
        if data is not None:
            found[path] = data if "error" not in data else ModelError(data["error"])
        else:
            todo.append(path)
    while todo:
        done = _run_child(todo, found)
        todo = todo[done:]
    return found


def _run_child(todo: list[Path], found: dict[Path, dict[str, Any] | ModelError]) -> int:
    """Read ``todo`` in one child; returns how many files it dealt with (at least one)."""
    args = [*CHILD_COMMAND, *(os.path.abspath(path) for path in todo)]
    try:
        proc = run_child(args, READ_TIMEOUT_S)
        stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr, returncode = "", None
    done = 0
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            break
        if done >= len(todo) or not isinstance(record, dict):
            break
        if "fatal" in record:  # no reader at all: every file fails, nothing is cached
            for path in todo[done:]:
                found[path] = ModelError(f"cannot read {path}: {record['fatal']}")
            return len(todo)
        path = todo[done]
        if "error" in record:
            found[path] = ModelError(f"{path} is malformed: {record['error']}")
            _store_cached(path, {"error": str(found[path])})
        else:
            found[path] = record
            _store_cached(path, record)
        done += 1
    if done == 0 and returncode == 1:  # Python failed before any file: not the file's fault
        last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
        for path in todo:
            found[path] = ModelError(f"cannot read {path}: the GGUF reader failed: {last}")
        return len(todo)
    if done < len(todo) and returncode != 0:
        # The file after the last reported one is the one that killed the reader.
        path = todo[done]
        if returncode is None:
            reason = f"reading it took longer than {READ_TIMEOUT_S} s"
        else:
            reason = f"the GGUF reader crashed on it ({_crash_line(stderr, returncode)})"
        found[path] = ModelError(f"{path} is malformed: {reason}")
        done += 1
    elif done < len(todo):
        for path in todo[done:]:
            found[path] = ModelError(f"cannot read {path}: the GGUF reader gave no answer")
        done = len(todo)
    return done


def _crash_line(stderr: str, returncode: int) -> str:
    for line in reversed(stderr.splitlines()):
        match = re.search(r"GGML_ASSERT\((.*)\) failed", line)
        if match:
            return f"GGML_ASSERT({match.group(1)}) failed"
    return f"exit status {returncode}" if returncode > 0 else f"signal {-returncode}"


def _cache_file(path: Path) -> Path | None:
    try:
        # The file's identity (inode and ctime too), not only size and mtime, which a
        # replacement can copy: see files.file_version.
        key = f"{FORMAT_VERSION}|{path.resolve()}|{file_version(path)}"
    except OSError:
        return None
    digest = hashlib.sha256(os.fsencode(key)).hexdigest()[:32]  # any file name
    return paths.cache_dir() / "gguf-meta" / f"{digest}.json"


def _load_cached(path: Path) -> dict[str, Any] | None:
    cache = _cache_file(path)
    try:
        # Bounded and never blocking: the cache folder is the user's to point anywhere.
        data = json.loads(read_regular_file(cache, CACHE_LIMIT)) if cache else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _store_cached(path: Path, data: dict[str, Any]) -> None:
    cache = _cache_file(path)
    if cache is None:
        return
    with contextlib.suppress(OSError):  # an unwritable cache only costs a re-read
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(data))
        os.replace(partial, cache)


def _child(files: Iterable[str]) -> int:
    """The child process: one JSON line per file, flushed as soon as it is known."""
    from gemma_chat.models.gguf_native import GGUFLibrary, ReadError

    _limit_memory()
    try:
        library = GGUFLibrary()
    except (OSError, AttributeError, ReadError) as exc:  # AttributeError: an old libggml
        print(json.dumps({"fatal": f"cannot load ggml's GGUF reader: {exc}"}), flush=True)
        return 1
    for name in files:
        path = Path(name)
        try:
            record: dict[str, Any] = {"file_size": path.stat().st_size, **library.read(path)}
        except (OSError, ReadError) as exc:
            record = {"error": str(exc)}
        except Exception as exc:  # one odd file must not cost the others their line
            record = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(record), flush=True)
    return 0


def _limit_memory() -> None:
    # A crafted file can ask for huge allocations; fail them instead of swapping.
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        limit = 8 << 30
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))


GGUF_MAGIC = b"GGUF"


def check_header(path: Path) -> int:
    """Cheap checks before anything reads the file: it exists and starts like a GGUF.

    Returns:
        The file size.

    Raises:
        ModelError: Missing, a directory, unreadable, empty, or not a GGUF file.
    """
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise ModelError(f"model path is not a regular file: {path}")
        with path.open("rb") as handle:
            head = handle.read(8)
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelError(f"model path is a directory, not a GGUF file: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if head[:4] != GGUF_MAGIC:
        raise ModelError(f"not a GGUF model file: {path}")
    if len(head) < 8 or size < 24:
        raise ModelError(f"model file is truncated: {path}")
    return size
