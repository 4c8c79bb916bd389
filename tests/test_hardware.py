"""RAM, cgroup limits, llama.cpp's device list, and nvidia-smi: its parser on recorded
output, and real runs of fake ``nvidia-smi`` scripts put first on PATH."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from gemma_chat import hardware
from gemma_chat.hardware import MIB, Gpu, parse_nvidia_smi

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


def test_system_memory_matches_the_kernel() -> None:
    memory = hardware.system_memory()
    meminfo = dict(
        (line.split(":")[0], int(line.split()[1]) * 1024)
        for line in Path("/proc/meminfo").read_text().splitlines()
    )
    assert meminfo["MemTotal"] == psutil.virtual_memory().total
    limit = hardware.cgroup_limit()
    if limit is None or limit[0] >= meminfo["MemTotal"]:
        assert memory.total == meminfo["MemTotal"]
        assert abs(memory.available - meminfo["MemAvailable"]) < 0.1 * memory.total
    else:  # in a container with a memory limit (common on CI machines)
        assert memory.total == limit[0]
    assert 0 < memory.available <= memory.total


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


def test_llama_cpp_lists_this_cpu_build() -> None:
    devices = hardware.llama_devices()
    assert [(d.name, d.type, d.backend) for d in devices] == [("CPU", "cpu", "CPU")]
    assert devices[0].total > 0
    assert hardware.llama_backends() == ["CPU"]
    counts = hardware.cpu_counts()
    assert counts["logical"] == os.cpu_count()
    assert counts["affinity"] == len(os.sched_getaffinity(0))
