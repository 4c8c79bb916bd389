"""RAM, cgroup limits, llama.cpp's device list, and nvidia-smi: its parser on recorded
output, and real runs of fake ``nvidia-smi`` scripts put first on PATH."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from gemma_chat.backend import build_info
from gemma_chat.planning import hardware
from gemma_chat.planning.hardware import MIB, Gpu, parse_nvidia_smi

H100 = "81037, 81559, NVIDIA H100 80GB HBM3\n"
TWO_GPUS = "23010, 24564, NVIDIA GeForce RTX 4090\n 7953, 8192, NVIDIA GeForce RTX 3070\n"
MIG_NA = "[N/A], [N/A], NVIDIA A100-SXM4-40GB MIG 1g.5gb\n"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def test_parse_recorded_nvidia_smi_output() -> None:
    assert parse_nvidia_smi(H100) == [
        Gpu("NVIDIA H100 80GB HBM3", 81037 * MIB, 81559 * MIB, "nvidia-smi")
    ]
    two = parse_nvidia_smi(TWO_GPUS)
    assert [g.name for g in two] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3070"]
    assert hardware.free_vram(two) == (23010 + 7953) * MIB
    assert parse_nvidia_smi(MIG_NA) == []
    assert parse_nvidia_smi(NO_DRIVER) == []
    assert parse_nvidia_smi("") == [] and hardware.free_vram([]) is None


def fake_nvidia_smi(tmp_path: Path, body: str) -> Path:
    """A ``nvidia-smi`` shell script in its own folder; returns the folder."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return folder


def put_first_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_nvidia_smi_runs_the_query(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = tmp_path / "args"
    folder = fake_nvidia_smi(tmp_path, f'echo "$@" > {args}\nprintf "{TWO_GPUS}"')
    put_first_on_path(monkeypatch, folder)
    gpus = hardware.nvidia_smi()
    assert gpus == parse_nvidia_smi(TWO_GPUS)
    assert args.read_text().split() == [
        "--query-gpu=memory.free,memory.total,name",
        "--format=csv,noheader,nounits",
    ]
    # A CPU build asks nvidia-smi; so does a GPU build whose llama.cpp lists no GPU.
    assert hardware.gpus(gpu_build=False) == gpus
    assert hardware.gpus(gpu_build=True) == gpus


def test_nvidia_smi_failures_mean_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # not installed
    assert hardware.nvidia_smi() is None and hardware.gpus(gpu_build=False) == []
    put_first_on_path(monkeypatch, fake_nvidia_smi(tmp_path, f'echo "{NO_DRIVER}"\nexit 9'))
    assert hardware.nvidia_smi() is None


def test_a_hanging_nvidia_smi_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    put_first_on_path(monkeypatch, fake_nvidia_smi(tmp_path, "exec sleep 30"))
    start = time.monotonic()
    assert hardware.nvidia_smi(timeout=0.5) is None
    assert time.monotonic() - start < 5


def test_system_memory_matches_the_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Available memory moves between any two readings (other processes, the page cache),
    # so psutil reads a frozen copy of the kernel's /proc/meminfo and the cgroup is read
    # once: the answer must then be exact, on any host.
    (tmp_path / "meminfo").write_bytes(Path("/proc/meminfo").read_bytes())
    meminfo = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in (tmp_path / "meminfo").read_text().splitlines()
    }
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    limit = hardware.cgroup_limit()
    monkeypatch.setattr(hardware, "cgroup_limit", lambda: limit)
    memory = hardware.system_memory()
    if limit is None or limit[0] >= meminfo["MemTotal"]:
        assert memory == hardware.Memory(meminfo["MemTotal"], meminfo["MemAvailable"])
    else:  # in a container with a memory limit (common on CI machines)
        headroom = max(0, limit[0] - limit[1])
        assert memory == hardware.Memory(limit[0], min(meminfo["MemAvailable"], headroom))
    assert 0 < memory.available <= memory.total
    # The total does not move: the live reading agrees with the kernel's.
    assert psutil.virtual_memory().total == meminfo["MemTotal"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, (16 << 30, 10 << 30)),  # no cgroup limit: the machine's RAM
        ((32 << 30, 1 << 30), (16 << 30, 10 << 30)),  # a limit above the RAM changes nothing
        ((4 << 30, 1 << 30), (4 << 30, 3 << 30)),  # the limit, less what the cgroup uses
        ((4 << 30, 5 << 30), (4 << 30, 0)),  # over its limit: nothing is available
        ((12 << 30, 1 << 30), (12 << 30, 10 << 30)),  # room in the cgroup, not in the RAM
    ],
)
def test_system_memory_under_a_cgroup_limit(
    monkeypatch: pytest.MonkeyPatch, limit: tuple[int, int] | None, expected: tuple[int, int]
) -> None:
    reading = psutil.virtual_memory()._replace(total=16 << 30, available=10 << 30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: reading)
    monkeypatch.setattr(hardware, "cgroup_limit", lambda: limit)
    assert hardware.system_memory() == hardware.Memory(*expected)


def test_cgroup_limits(tmp_path: Path) -> None:
    assert hardware.cgroup_limit(tmp_path) is None  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert hardware.cgroup_limit(tmp_path) is None  # v2, unlimited
    (tmp_path / "memory.max").write_text(f"{4 << 30}\n")
    assert hardware.cgroup_limit(tmp_path) == (4 << 30, 1000)
    # The page cache (inactive files) is reclaimable: it does not count as used.
    (tmp_path / "memory.current").write_text(f"{3 << 30}\n")
    (tmp_path / "memory.stat").write_text(f"anon 1000\ninactive_file {2 << 30}\nfile 5\n")
    assert hardware.cgroup_limit(tmp_path) == (4 << 30, 1 << 30)
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("2741334016\n")
    assert hardware.cgroup_limit(v1) is None  # v1's "unlimited" is a page-rounded 2**63
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")
    assert hardware.cgroup_limit(v1) == (2 << 30, 2741334016)
    (v1 / "memory" / "memory.stat").write_text("cache 9\ntotal_inactive_file 741334016\n")
    assert hardware.cgroup_limit(v1) == (2 << 30, 2000000000)


def test_llama_cpp_lists_what_this_build_has() -> None:
    """Whatever the build (CPU-only, CUDA, Metal, Vulkan; any llama-cpp-python 0.3.x):
    one CPU device, every device from a listed backend, and no GPU on a build that says
    it cannot offload."""
    import llama_cpp

    devices = build_info.llama_devices()
    backends = build_info.llama_backends()
    assert "CPU" in backends and len(backends) == len(set(backends))
    cpu = [d for d in devices if d.type == "cpu"]
    assert [(d.name, d.backend) for d in cpu] == [("CPU", "CPU")]
    assert cpu[0].total > 0
    assert all(d.backend in backends for d in devices)
    assert all(d.type in build_info.DEVICE_TYPES for d in devices)
    gpu_devices = [d for d in devices if d.type in build_info.GPU_TYPES]
    if not llama_cpp.llama_supports_gpu_offload():
        assert gpu_devices == []
    assert all(0 <= d.free <= d.total and d.total > 0 for d in gpu_devices)
    # llama.cpp's own summary names only backends that the device API lists too.
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    assert set(build_info.system_features(info)) <= set(backends)
    counts = hardware.cpu_counts()
    assert counts["logical"] == os.cpu_count()
    assert counts["affinity"] == len(os.sched_getaffinity(0))
