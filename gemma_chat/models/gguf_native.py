"""ggml's own GGUF parser, bound with ctypes: the reading half of
:mod:`gemma_chat.models.gguf_meta`.

llama-cpp-python ships ``libggml-base``, which exports ggml's GGUF C API (``gguf.h``).
``gguf_init_from_file`` with ``no_alloc=true, ctx=NULL`` reads the header, every
key/value and every tensor's name, type and shape, but no tensor data, so a multi-GB file
is read in milliseconds. The ``gguf`` package's ``GGUFReader`` builds a Python object per
vocabulary entry instead (10 s on the 262k-token demo model).

Only the child process started by :mod:`gemma_chat.models.gguf_meta` calls this: the getters
abort the process (``GGML_ASSERT``) when misused, and a crafted file may still find a
crash, so the caller's process never runs it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any

GGML_MAX_DIMS = 4
LOG_LEVEL_ERROR = 4
TOKEN_TYPE_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL in tokenizer.ggml.token_type
TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")

STRING_ARRAY_KEEP = 64
"""String arrays longer than this (vocabulary, merges) are summarized, not copied."""
NUMBER_ARRAY_KEEP = 1024
"""Numeric arrays up to this length are kept: per-layer values (head counts, sliding-window
patterns) have one entry per block, and the planner needs them."""

# gguf_type -> (name, ctypes scalar type, getter suffix); STRING (8) and ARRAY (9) apart.
_SCALARS: dict[int, tuple[str, Any, str]] = {
    0: ("u8", ctypes.c_uint8, "u8"),
    1: ("i8", ctypes.c_int8, "i8"),
    2: ("u16", ctypes.c_uint16, "u16"),
    3: ("i16", ctypes.c_int16, "i16"),
    4: ("u32", ctypes.c_uint32, "u32"),
    5: ("i32", ctypes.c_int32, "i32"),
    6: ("f32", ctypes.c_float, "f32"),
    7: ("bool", ctypes.c_bool, "bool"),
    10: ("u64", ctypes.c_uint64, "u64"),
    11: ("i64", ctypes.c_int64, "i64"),
    12: ("f64", ctypes.c_double, "f64"),
}
GGUF_I32, GGUF_STRING, GGUF_ARRAY = 5, 8, 9

LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


class ReadError(Exception):
    """ggml refused the file; the message is ggml's most specific log line."""


def library_path() -> Path:
    """``libggml-base`` inside the installed ``llama_cpp`` package (not imported: slow)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ReadError("llama-cpp-python is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    names = {"darwin": "libggml-base.dylib", "win32": "ggml-base.dll"}
    name = names.get(sys.platform, "libggml-base.so")
    for folder in (package / "lib", package):  # older wheels kept the libraries beside
        if (folder / name).exists():
            return folder / name
    raise ReadError(f"llama-cpp-python has no {name} in {package}")


class GGUFLibrary:
    """The GGUF functions of ``libggml-base``, with their C signatures declared."""

    def __init__(self, path: Path | None = None) -> None:
        # The dynamic loader hands back the copy llama_cpp loaded, if it is loaded.
        lib = ctypes.CDLL(str(path or library_path()))
        ctx, i64, sz, cstr = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t, ctypes.c_char_p
        signatures: dict[str, tuple[Any, list[Any]]] = {
            "gguf_init_from_file": (ctx, [cstr, _InitParams]),
            "gguf_free": (None, [ctx]),
            "gguf_get_version": (ctypes.c_uint32, [ctx]),
            "gguf_get_alignment": (sz, [ctx]),
            "gguf_get_data_offset": (sz, [ctx]),
            "gguf_get_n_kv": (i64, [ctx]),
            "gguf_get_key": (cstr, [ctx, i64]),
            "gguf_get_kv_type": (ctypes.c_int, [ctx, i64]),
            "gguf_get_arr_type": (ctypes.c_int, [ctx, i64]),
            "gguf_get_arr_n": (sz, [ctx, i64]),
            "gguf_get_arr_data": (ctypes.c_void_p, [ctx, i64]),
            "gguf_get_arr_str": (cstr, [ctx, i64, sz]),
            "gguf_get_val_str": (cstr, [ctx, i64]),
            "gguf_get_n_tensors": (i64, [ctx]),
            "gguf_get_tensor_name": (cstr, [ctx, i64]),
            "gguf_get_tensor_type": (ctypes.c_int, [ctx, i64]),
            "gguf_get_tensor_size": (sz, [ctx, i64]),
            "gguf_get_tensor_offset": (sz, [ctx, i64]),
            "gguf_get_tensor_ne": (ctypes.POINTER(i64), [ctx, i64]),
            "ggml_type_name": (cstr, [ctypes.c_int]),
            "ggml_log_set": (None, [LOG_CALLBACK, ctypes.c_void_p]),
        }
        for _, ctype, suffix in _SCALARS.values():
            signatures[f"gguf_get_val_{suffix}"] = (ctype, [ctx, i64])
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        self.lib = lib
        self.errors: list[str] = []
        self._callback = LOG_CALLBACK(self._log)  # kept alive: C holds a raw pointer
        lib.ggml_log_set(self._callback, None)

    def _log(self, level: int, text: bytes | None, _user: Any) -> None:
        # Keep ggml's own words for the one-line error; print nothing.
        if level == LOG_LEVEL_ERROR and text:
            self.errors.append(text.decode("utf-8", "replace").strip())

    def read(self, path: Path) -> dict[str, Any]:
        """Read one GGUF file's key/values and tensor infos (see :func:`read_file`)."""
        self.errors.clear()
        handle = self.lib.gguf_init_from_file(
            os.fsencode(path), _InitParams(no_alloc=True, ctx=None)
        )
        if not handle:
            reason = _first_error(self.errors) or "ggml could not read it"
            if reason.startswith("failed to read"):
                reason = f"the file is truncated or corrupt (ggml: {reason})"
            raise ReadError(reason)
        try:
            return _describe(self.lib, handle, path.stat().st_size)
        finally:
            self.lib.gguf_free(handle)


def _first_error(lines: list[str]) -> str | None:
    # ggml logs the specific cause first, then generic lines ("failed to read header").
    for line in lines:
        text = line.split(": ", 1)[-1] if line.startswith("gguf_") else line
        if text:
            return text
    return None


def _describe(lib: Any, handle: int, file_size: int) -> dict[str, Any]:
    kv = {}
    for i in range(lib.gguf_get_n_kv(handle)):
        kv[_text(lib.gguf_get_key(handle, i))] = _value(lib, handle, i)
    data_offset = lib.gguf_get_data_offset(handle)
    tensors, data_end = [], data_offset
    for i in range(lib.gguf_get_n_tensors(handle)):
        ggml_type = lib.gguf_get_tensor_type(handle, i)
        n_bytes = lib.gguf_get_tensor_size(handle, i)
        ne = lib.gguf_get_tensor_ne(handle, i)
        shape = [ne[d] for d in range(GGML_MAX_DIMS)]
        while len(shape) > 1 and shape[-1] == 1:  # ne[d] is 1 past the tensor's n_dims
            shape.pop()
        tensors.append(
            {
                "name": _text(lib.gguf_get_tensor_name(handle, i)),
                "ggml_type": ggml_type,
                "type_name": _text(lib.ggml_type_name(ggml_type)),
                "n_bytes": n_bytes,
                "shape": shape,
            }
        )
        data_end = max(data_end, data_offset + lib.gguf_get_tensor_offset(handle, i) + n_bytes)
    if data_end > file_size:
        # ggml checks tensor data against the file only when it loads the data.
        raise ReadError(
            f"the file is truncated: tensor data ends at byte {data_end} but the file "
            f"has {file_size} bytes"
        )
    return {
        "version": lib.gguf_get_version(handle),
        "alignment": lib.gguf_get_alignment(handle),
        "data_offset": data_offset,
        "kv": kv,
        "tensors": tensors,
        "turn_tokens": _turn_tokens(lib, handle, kv),
    }


def _value(lib: Any, handle: int, key_id: int) -> Any:
    kind = lib.gguf_get_kv_type(handle, key_id)
    if kind == GGUF_STRING:
        return _text(lib.gguf_get_val_str(handle, key_id))
    if kind != GGUF_ARRAY:
        return _number(getattr(lib, f"gguf_get_val_{_SCALARS[kind][2]}")(handle, key_id))
    item, n = lib.gguf_get_arr_type(handle, key_id), lib.gguf_get_arr_n(handle, key_id)
    if item == GGUF_STRING:
        if n > STRING_ARRAY_KEEP:
            return {"__array__": "str", "n": n}
        return [_text(lib.gguf_get_arr_str(handle, key_id, j)) for j in range(n)]
    name, ctype, _ = _SCALARS[item]
    if n > NUMBER_ARRAY_KEEP:
        return {"__array__": name, "n": n}
    if n == 0:
        return []
    data = (ctype * n).from_address(lib.gguf_get_arr_data(handle, key_id))
    return [_number(value) for value in data]


def _turn_tokens(lib: Any, handle: int, kv: dict[str, Any]) -> dict[str, int]:
    """The ids of the Gemma turn tokens, where they are control tokens.

    Only control tokens are compared (about 6k of the demo model's 262k; the turn tokens
    sit near id 106), read straight from the token-type array; a vocabulary without
    token types is compared whole.
    """
    found: dict[str, int] = {}
    tokens_id = _key_id(lib, handle, "tokenizer.ggml.tokens")
    if tokens_id is None or lib.gguf_get_arr_type(handle, tokens_id) != GGUF_STRING:
        return found
    n = lib.gguf_get_arr_n(handle, tokens_id)
    candidates: Any = range(n)
    types_id = _key_id(lib, handle, "tokenizer.ggml.token_type")
    if (
        n
        and types_id is not None
        and lib.gguf_get_arr_type(handle, types_id) == GGUF_I32
        and lib.gguf_get_arr_n(handle, types_id) == n
    ):
        types = (ctypes.c_int32 * n).from_address(lib.gguf_get_arr_data(handle, types_id))
        candidates = (i for i, kind in enumerate(types) if kind == TOKEN_TYPE_CONTROL)
    wanted = {text.encode(): text for text in TURN_TOKENS}
    for i in candidates:
        text = wanted.get(lib.gguf_get_arr_str(handle, tokens_id, i))
        if text is not None and text not in found:
            found[text] = i
            if len(found) == len(wanted):
                break
    return found


def _key_id(lib: Any, handle: int, key: str) -> int | None:
    for i in range(lib.gguf_get_n_kv(handle)):
        if lib.gguf_get_key(handle, i) == key.encode():
            return i
    return None


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw is not None else ""


def _number(value: Any) -> Any:
    # JSON has no NaN or infinity; a broken file may hold them.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
