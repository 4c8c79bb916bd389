"""What the installed llama.cpp build is: version, CPU features, backends and devices.

Read-only queries of the build, kept in ``backend/`` because only ``backend/`` imports
``llama_cpp`` (the import contract allows no exceptions). The device list goes through
ggml's C API (``llama_cpp._ggml``), which llama-cpp-python does not wrap.
"""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from typing import Any

# ggml_backend_dev_type, in ggml-backend.h order.
DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel", "meta")
GPU_TYPES = ("gpu", "igpu")


@dataclass(frozen=True)
class Device:
    """A device in llama.cpp's (ggml's) device list.

    Attributes:
        name: ggml's device name (``CPU``, ``CUDA0``).
        description: The hardware (``AMD EPYC``, ``NVIDIA H100 80GB HBM3``).
        type: ``cpu``, ``gpu``, ``igpu``, ``accel`` or ``meta``.
        backend: The backend that registered it (``CPU``, ``CUDA``, ``BLAS``).
        free: Free memory in bytes (the CPU device reports total RAM).
        total: Total memory in bytes.
    """

    name: str
    description: str
    type: str
    backend: str
    free: int
    total: int


def llama_build() -> dict[str, Any]:
    """llama-cpp-python's version, llama.cpp's CPU features, backends and devices."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    backends = llama_backends()
    return {
        "version": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "backends": backends,
        "devices": [asdict(device) for device in llama_devices()],
        "blas": "BLAS" in backends or "BLAS = 1" in info,
        "features": system_features(info),
        "system_info": info,
    }


def version_lines() -> list[str]:
    """``gemma-chat --version``: gemma-chat's version, llama-cpp-python's, and whether
    its llama.cpp build can use a GPU (with the backends it registered)."""
    from importlib import metadata

    import llama_cpp

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    build = "GPU build" if gpu else "CPU-only build"
    return [
        f"gemma-chat {version('gemma-chat')}",
        f"llama-cpp-python {llama_cpp.__version__} ({build}; backends: "
        f"{', '.join(llama_backends()) or 'none'})",
    ]


def system_features(info: str) -> dict[str, list[str]]:
    """``llama_print_system_info()`` as the features each backend has switched on:
    ``"CPU : SSE3 = 1 | AVX = 1 | ..."`` gives ``{"CPU": ["SSE3", "AVX", ...]}``."""
    features: dict[str, list[str]] = {}
    section = ""
    for item in info.split("|"):
        head, sep, rest = item.partition(" : ")
        if sep:
            section, item = head.strip(), rest
        key, _, value = item.partition("=")
        if key.strip() and value.strip() not in ("", "0"):
            features.setdefault(section, []).append(key.strip())
    return features


def llama_devices() -> list[Device]:
    """The devices llama.cpp's build can use, with their memory (imports llama_cpp)."""
    lib = _ggml()
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = lib.ggml_backend_dev_type(dev)
        devices.append(
            Device(
                name=_text(lib.ggml_backend_dev_name(dev)),
                description=_text(lib.ggml_backend_dev_description(dev)),
                type=DEVICE_TYPES[kind] if 0 <= kind < len(DEVICE_TYPES) else str(kind),
                backend=_text(lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev))),
                free=int(free.value),
                total=int(total.value),
            )
        )
    return devices


def llama_backends() -> list[str]:
    """The backends compiled into (or loaded by) llama.cpp: ``CPU``, ``CUDA``, ``BLAS``..."""
    lib = _ggml()
    return [
        _text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)))
        for i in range(lib.ggml_backend_reg_count())
    ]


def _ggml() -> Any:
    """libggml with the device API's C signatures declared. The getters live in
    libggml-base, which the dynamic loader resolves through libggml's dependencies."""
    from llama_cpp._ggml import libggml as lib

    ptr, size, cstr = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "ggml_backend_dev_count": (size, []),
        "ggml_backend_dev_get": (ptr, [size]),
        "ggml_backend_dev_name": (cstr, [ptr]),
        "ggml_backend_dev_description": (cstr, [ptr]),
        "ggml_backend_dev_type": (ctypes.c_int, [ptr]),
        "ggml_backend_dev_memory": (None, [ptr, ctypes.POINTER(size), ctypes.POINTER(size)]),
        "ggml_backend_dev_backend_reg": (ptr, [ptr]),
        "ggml_backend_reg_count": (size, []),
        "ggml_backend_reg_get": (ptr, [size]),
        "ggml_backend_reg_name": (cstr, [ptr]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""
