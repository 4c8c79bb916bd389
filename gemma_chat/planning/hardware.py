"""What the machine has: RAM, GPUs and their free memory, llama.cpp's devices.

RAM comes from ``psutil`` (the same answer on Linux, macOS and Windows; "available"
counts reclaimable page cache, which is what a model load can use), capped by a Linux
cgroup limit when a container sets one. VRAM comes from llama.cpp's own device list
when the build has a GPU backend, else from ``nvidia-smi`` when it is installed (so a
CPU build can still say that a GPU is there). Nothing here can hang: ``nvidia-smi`` runs
with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gemma_chat.backend import build_info

MIB = 1024**2
NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_SMI_QUERY = (
    "--query-gpu=memory.free,memory.total,name",
    "--format=csv,noheader,nounits",
)


@dataclass(frozen=True)
class Memory:
    """System RAM in bytes.

    Attributes:
        total: Installed RAM (or the cgroup limit, when lower).
        available: What a new allocation can get without swapping.
    """

    total: int
    available: int


@dataclass(frozen=True)
class Gpu:
    """One GPU and its memory in bytes.

    Attributes:
        name: As the driver names it.
        free: Free memory.
        total: Total memory.
        source: ``llama.cpp`` or ``nvidia-smi``.
        backend: The ggml backend (``CUDA``, ``Metal``, ``Vulkan``), if known.
    """

    name: str
    free: int
    total: int
    source: str
    backend: str | None = None


def system_memory() -> Memory:
    """Total and available RAM, capped by a cgroup memory limit."""
    import psutil

    memory = psutil.virtual_memory()
    total, available = int(memory.total), int(memory.available)
    limit = cgroup_limit()
    if limit is not None and limit[0] < total:
        total, available = limit[0], min(available, max(0, limit[0] - limit[1]))
    return Memory(total, available)


def cgroup_limit(root: Path = Path("/sys/fs/cgroup")) -> tuple[int, int] | None:
    """This process's cgroup memory limit and usage (v2, else v1), if one is set."""
    for limit_name, usage_name, stat_name, cache_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        try:
            limit = (root / limit_name).read_text().strip()
            usage = int((root / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        # "max" (v2) or a page-rounded 2**63 (v1) means no limit.
        if limit.isdigit() and int(limit) < 2**62:
            # Usage counts the page cache, which the kernel reclaims for a model load
            # (after reading a large model it is most of the usage): leave it out, as
            # `docker stats` and the kubelet do.
            return int(limit), max(0, usage - _stat_value(root / stat_name, cache_key))
        return None
    return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cpu_counts() -> dict[str, int | None]:
    """Logical and physical cores, and the cores this process may run on."""
    import psutil

    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    return {
        "logical": os.cpu_count(),
        "physical": psutil.cpu_count(logical=False),
        "affinity": affinity,
    }


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=memory.free,memory.total,name
    --format=csv,noheader,nounits`` (MiB). Lines that are not GPUs (driver errors,
    ``[N/A]`` values) are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",", 2)]
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        gpus.append(Gpu(fields[2], int(fields[0]) * MIB, int(fields[1]) * MIB, "nvidia-smi"))
    return gpus


def nvidia_smi(timeout: float = NVIDIA_SMI_TIMEOUT_S) -> list[Gpu] | None:
    """The NVIDIA GPUs ``nvidia-smi`` reports, or None when it is absent or fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        proc = subprocess.run(
            [executable, *NVIDIA_SMI_QUERY],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvidia_smi(proc.stdout) if proc.returncode == 0 else None


def gpus(gpu_build: bool) -> list[Gpu]:
    """The GPUs and their free memory: llama.cpp's view on a GPU build (what it can
    actually use), else ``nvidia-smi``'s."""
    if gpu_build:
        with contextlib.suppress(OSError, AttributeError):
            found = [
                Gpu(d.description or d.name, d.free, d.total, "llama.cpp", d.backend)
                for d in build_info.llama_devices()
                if d.type in build_info.GPU_TYPES
            ]
            if found:
                return found
    return nvidia_smi() or []


def free_vram(found: list[Gpu]) -> int | None:
    """Free VRAM over all GPUs, or None without any."""
    return sum(gpu.free for gpu in found) if found else None
