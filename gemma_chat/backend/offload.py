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
    gpu: bool | None, gpu_layers: int | Literal["all"], supported: bool
) -> OffloadPlan:
    """Resolve the GPU settings against what the llama.cpp build supports.

    Args:
        gpu: True asks for the GPU, False forces the CPU, None uses the GPU if it can.
        gpu_layers: Layers to offload when on the GPU, or "all".
        supported: ``llama_supports_gpu_offload()`` of the installed build.
    """
    layers = -1 if gpu_layers == "all" else int(gpu_layers)
    if gpu is False or layers == 0:
        return OffloadPlan(0, "cpu")
    if supported:
        return OffloadPlan(layers, "gpu")
    if gpu is None and gpu_layers == "all":
        return OffloadPlan(0, "cpu")
    return OffloadPlan(
        0,
        "cpu",
        f"GPU requested, but this llama.cpp build has no GPU support; running on the CPU. "
        f"To use an NVIDIA GPU, {CUDA_HINT}",
    )
