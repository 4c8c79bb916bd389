"""Deciding where the model runs: the GPU-offload switch, testable without a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CUDA_HINT = (
    "reinstall llama-cpp-python with CUDA: "
    'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
)


@dataclass(frozen=True)
class OffloadPlan:
    """How many layers to hand to llama.cpp's GPU backend.

    Attributes:
        n_gpu_layers: The value for llama.cpp (-1 means all layers).
        device: ``"gpu"`` or ``"cpu"``.
        warning: One line to show the user, when the request could not be honoured.
    """

    n_gpu_layers: int
    device: str
    warning: str | None = None


def plan_offload(
    gpu: bool | None,
    gpu_layers: int | Literal["all", "auto"],
    supported: bool,
    auto_layers: int | None = None,
) -> OffloadPlan:
    """Resolve the GPU settings against what the llama.cpp build supports.

    Args:
        gpu: True asks for the GPU, False forces the CPU, None uses the GPU if it can.
        gpu_layers: Layers to offload when on the GPU, "all", or "auto".
        supported: ``llama_supports_gpu_offload()`` of the installed build.
        auto_layers: For "auto", the ``n_gpu_layers`` the memory planner fits in the
            free VRAM (see :func:`gemma_chat.planning.planner.plan_memory`); None when it could
            not tell, which offloads every layer, as llama.cpp itself would.
    """
    if gpu_layers == "auto":
        if gpu is False or (gpu is None and not supported):
            return OffloadPlan(0, "cpu")  # auto on a CPU build: no noise
        if supported and auto_layers == 0:
            return OffloadPlan(
                0,
                "cpu",
                "not even one layer of the model fits in the free VRAM; running on the "
                "CPU (--gpu-layers N offloads N layers anyway)",
            )
        if supported:
            return OffloadPlan(-1 if auto_layers is None else auto_layers, "gpu")
        return _no_gpu_support()
    layers = -1 if gpu_layers == "all" else int(gpu_layers)
    if gpu is False or layers == 0:
        return OffloadPlan(0, "cpu")
    if supported:
        return OffloadPlan(layers, "gpu")
    if gpu is None and gpu_layers == "all":
        return OffloadPlan(0, "cpu")
    return _no_gpu_support()


def _no_gpu_support() -> OffloadPlan:
    return OffloadPlan(
        0,
        "cpu",
        f"GPU requested, but this llama.cpp build has no GPU support; running on the CPU. "
        f"To use an NVIDIA GPU, {CUDA_HINT}",
    )
