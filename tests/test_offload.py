"""The GPU-offload switch, testable without a GPU: the plan is a pure function of the
settings and of what the llama.cpp build supports. The CPU-build path runs for real in
test_cli.py; a real GPU run is not possible on these machines."""

from __future__ import annotations

import pytest

from gemma_chat.backend import llama_log
from gemma_chat.backend.offload import plan_offload


@pytest.mark.parametrize(
    ("gpu", "layers", "supported", "expected"),
    [
        (None, "all", True, (-1, "gpu", False)),
        (None, 20, True, (20, "gpu", False)),
        (True, "all", True, (-1, "gpu", False)),
        (False, "all", True, (0, "cpu", False)),
        (True, 0, True, (0, "cpu", False)),
        (None, "all", False, (0, "cpu", False)),  # auto on a CPU build: no noise
        (True, "all", False, (0, "cpu", True)),
        (None, 12, False, (0, "cpu", True)),  # asking for layers is asking for the GPU
        (False, 12, False, (0, "cpu", False)),
    ],
)
def test_plan(gpu, layers, supported: bool, expected) -> None:
    plan = plan_offload(gpu, layers, supported)
    assert (plan.n_gpu_layers, plan.device, plan.warning is not None) == expected
    if plan.warning:
        assert "no GPU support" in plan.warning and "-DGGML_CUDA=on" in plan.warning
        assert "\n" not in plan.warning


def test_offloaded_layers_are_read_from_llama_cpps_log(monkeypatch: pytest.MonkeyPatch) -> None:
    llama_log.clear()
    assert llama_log.offloaded_layers() is None
    monkeypatch.setattr(
        llama_log,
        "_LINES",
        type(llama_log._LINES)(["load_tensors: offloaded 27/27 layers to GPU\n"]),
    )
    assert llama_log.offloaded_layers() == 27
