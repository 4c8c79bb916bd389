"""The memory planner: Gemma 2's published shapes from synthetic metadata, llama.cpp's
sliding-window rules, layer selection for given VRAM sizes, and (slow) what llama.cpp
really allocates for the demo model and a tiny Gemma 2, parsed from its load log."""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import gguf
import pytest

from gemma_chat.backend.offload import OffloadPlan, plan_offload
from gemma_chat.cli.run_settings import build_settings, parse_gpu_layers
from gemma_chat.config.settings import Settings
from gemma_chat.errors import UsageError
from gemma_chat.models.loader import load_backend, offload_for
from gemma_chat.models.resolve import inspect_model
from gemma_chat.planning.hardware import Gpu
from gemma_chat.planning.model_shape import ModelShape, ShapeError
from gemma_chat.planning.planner import (
    GIB,
    MIB,
    compute_bytes,
    kv_cache_bytes,
    plan_memory,
    split,
)

# Gemma 2 as published (HF config.json; GEMMA_NOTES.md): layers, d_model, n_ff, heads,
# KV heads, head_dim. The window is 4096 for all three.
GEMMA2 = {
    "2b": (26, 2304, 9216, 8, 4, 256),
    "9b": (42, 3584, 14336, 16, 8, 256),
    "27b": (46, 4608, 36864, 32, 16, 128),
}
N_VOCAB = 256000


def gemma2_shape(size: str, *, layer_bytes: int = MIB, embd_bytes: int = 100 * MIB, **kv_extra):
    """A Gemma 2 ModelShape from synthetic key/values and tensor sizes."""
    n_layer, d_model, n_ff, heads, kv_heads, head_dim = GEMMA2[size]
    kv = {
        "general.architecture": "gemma2",
        "general.size_label": size.upper(),
        "general.file_type": 15,
        "gemma2.block_count": n_layer,
        "gemma2.embedding_length": d_model,
        "gemma2.feed_forward_length": n_ff,
        "gemma2.attention.head_count": heads,
        "gemma2.attention.head_count_kv": kv_heads,
        "gemma2.attention.key_length": head_dim,
        "gemma2.attention.value_length": head_dim,
        "gemma2.attention.sliding_window": 4096,
        "gemma2.context_length": 8192,
        **kv_extra,
    }
    kv = {key: value for key, value in kv.items() if value is not None}  # None: key left out
    tensors = [
        ("token_embd.weight", embd_bytes, (d_model, N_VOCAB)),
        ("output_norm.weight", 4 * d_model),
    ]
    tensors += [(f"blk.{il}.ffn_up.weight", layer_bytes) for il in range(n_layer)]
    return ModelShape.from_kv(kv, tensors)


@pytest.mark.parametrize(
    ("size", "gib_text", "per_token_kib"),
    [("2b", "0.81", 104), ("9b", "2.62", 336), ("27b", "2.88", 368)],
)
def test_gemma2_f16_kv_cache_at_8192(size: str, gib_text: str, per_token_kib: int) -> None:
    shape = gemma2_shape(size)
    kv = sum(kv_cache_bytes(shape, 8192))
    n_layer, _, _, _, kv_heads, head_dim = GEMMA2[size]
    # The figures are every layer keeping all 8192 cells: 2 x KV heads x head_dim
    # f16 values per layer per token. That is also what llama-cpp-python 0.3.36 allocates
    # (llama_context_default_params has swa_full = true).
    assert kv == n_layer * 2 * kv_heads * head_dim * 2 * 8192
    assert kv == per_token_kib * 1024 * 8192
    assert f"{kv / GIB:.2f}" == gib_text
    # With swa_full off, the 4096-token window layers (every other one) would keep only
    # 4096 + 512 cells: 22% less, and not the numbers.
    windowed = sum(kv_cache_bytes(shape, 8192, swa_full=False))
    assert windowed == kv * (8192 + 4608) // (2 * 8192)
    assert f"{windowed / GIB:.2f}" != gib_text


def test_quantized_cache_types_scale_by_their_block_size() -> None:
    shape = gemma2_shape("27b")
    f16 = sum(kv_cache_bytes(shape, 8192))
    assert sum(kv_cache_bytes(shape, 8192, type_k="q8_0", type_v="q8_0")) == f16 * 34 // 64
    assert sum(kv_cache_bytes(shape, 8192, type_k="q4_0", type_v="q4_0")) == f16 * 18 // 64
    assert sum(kv_cache_bytes(shape, 8192, type_k="q8_0")) == f16 * (34 + 64) // 128
    with pytest.raises(ValueError, match="unknown KV cache type"):
        kv_cache_bytes(shape, 8192, type_k="q3_k")


def test_context_is_rounded_up_to_256_cells() -> None:
    shape = gemma2_shape("2b")
    assert kv_cache_bytes(shape, 1000) == kv_cache_bytes(shape, 1024)
    assert sum(kv_cache_bytes(shape, 1025)) > sum(kv_cache_bytes(shape, 1024))


def test_sliding_window_layers_follow_llama_cpp_per_architecture() -> None:
    gemma2 = gemma2_shape("2b")
    assert gemma2.swa_layers[:4] == (True, False, True, False) and gemma2.n_swa == 4096
    # Gemma 2 slides with a 4096 window even when the file does not say so.
    without_key = gemma2_shape("2b", **{"gemma2.attention.sliding_window": None})
    assert without_key.n_swa == 4096
    kv = {
        "general.architecture": "gemma3",
        "gemma3.block_count": 12,
        "gemma3.embedding_length": 640,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
    }
    gemma3 = ModelShape.from_kv({**kv, "gemma3.attention.sliding_window": 512}, [])
    assert [il for il, swa in enumerate(gemma3.swa_layers) if not swa] == [5, 11]  # 5 local : 1
    assert gemma3.head_dim_k == 160  # embedding_length / head_count without key_length
    # Gemma 3 slides only when the file sets a window.
    assert not any(ModelShape.from_kv(kv, []).swa_layers)
    # An explicit pattern (a period, or per-layer flags) wins.
    every_third = ModelShape.from_kv(
        {
            **kv,
            "gemma3.attention.sliding_window": 512,
            "gemma3.attention.sliding_window_pattern": 3,
        },
        [],
    )
    assert every_third.swa_layers[:3] == (True, True, False)
    flags = [il == 0 for il in range(12)]
    explicit = ModelShape.from_kv(
        {
            **kv,
            "gemma3.attention.sliding_window": 512,
            "gemma3.attention.sliding_window_pattern": flags,
        },
        [],
    )
    assert explicit.swa_layers == tuple(flags)


def test_per_layer_head_counts_and_windowed_cache() -> None:
    shape = gemma2_shape("2b", **{"gemma2.attention.head_count_kv": [4, 2] * 13})
    per_layer = kv_cache_bytes(shape, 8192, swa_full=False)
    assert per_layer[0] == 4608 * 2 * 4 * 256 * 2  # sliding: window + ubatch cells, 4 heads
    assert per_layer[1] == 8192 * 2 * 2 * 256 * 2  # global: every cell, 2 heads
    # A window wider than the context keeps the context.
    assert kv_cache_bytes(shape, 2048, swa_full=False) == kv_cache_bytes(shape, 2048)


@pytest.mark.parametrize(
    ("kv", "problem"),
    [
        ({}, "the metadata has no general.architecture"),
        ({"general.architecture": "gemma2"}, "the metadata has no gemma2.block_count"),
        (
            {
                "general.architecture": "gemma2",
                "gemma2.block_count": 0,
                "gemma2.embedding_length": 8,
            },
            r"gemma2.block_count is 0; llama.cpp allows 1 to \d+",
        ),
        (
            {"general.architecture": "gemma2", "gemma2.block_count": 2**32 - 1},
            rf"gemma2.block_count is {2**32 - 1}; llama.cpp allows 1 to \d+",
        ),
        (
            {
                "general.architecture": "gemma2",
                "gemma2.block_count": 2,
                "gemma2.embedding_length": -1,
            },
            "gemma2.embedding_length is not a non-negative integer: -1",
        ),
        (
            {
                "general.architecture": "gemma2",
                "gemma2.block_count": 2,
                "gemma2.embedding_length": 8,
                "gemma2.attention.head_count": [1, 2, 3],
            },
            "gemma2.attention.head_count is neither a number nor one number per layer",
        ),
    ],
)
def test_metadata_without_what_the_planner_needs_is_refused(kv: dict, problem: str) -> None:
    with pytest.raises(ShapeError, match=f"^{problem}$"):
        ModelShape.from_kv(kv, [])


def h100_27b_q4() -> ModelShape:
    """Gemma 2 27B at about Q4_K_M: 16.9 GiB of weights (the embedding ~0.95 GiB)."""
    embd = 1020 * MIB
    return gemma2_shape("27b", layer_bytes=(int(16.9 * GIB) - embd) // 46, embd_bytes=embd)


def test_27b_fits_on_one_h100() -> None:
    plan = plan_memory(
        h100_27b_q4(),
        8192,
        free_ram=20 * GIB,
        free_vram=79 * GIB,
        gpu_name="NVIDIA H100 80GB HBM3",
    )
    assert plan.gpu_layers == plan.max_layers == 47 and plan.fits_vram and plan.fits_ram
    assert plan.verdict.startswith(
        "27B Q4_K_M at 8192 ctx fits on the GPU (NVIDIA H100 80GB HBM3): "
        "16.9 GiB weights + 2.88 GiB KV + "
    )
    # Only the token embedding (input) and one token's logits stay in RAM.
    assert plan.cpu_bytes == 1020 * MIB + N_VOCAB * 4


@pytest.mark.parametrize("free_gib", [0.6, 4, 8, 12, 16, 24])
def test_auto_picks_the_most_layers_that_fit(free_gib: float) -> None:
    shape = h100_27b_q4()
    free = int(free_gib * GIB)
    plan = plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=free)
    budget = free - (free // 10 + 512 * MIB)
    layers = plan.gpu_layers
    if layers:
        assert split(shape, 8192, layers)[0] <= budget
        assert plan.gpu_bytes <= budget
    if layers < plan.max_layers:
        assert split(shape, 8192, layers + 1)[0] > budget  # one more would not fit
    assert (layers == plan.max_layers) == (free_gib == 24)  # 20.3 GiB in all
    assert plan.cpu_bytes + plan.gpu_bytes >= plan.weights + plan.kv_cache


def test_auto_counts_layers_for_synthetic_vram_sizes() -> None:
    shape = h100_27b_q4()

    def layers(free_gib: float) -> int:
        return plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=int(free_gib * GIB)).gpu_layers

    assert layers(0.6) == 0  # the margin alone takes 572 MiB
    assert layers(80) == 47
    counts = [layers(g) for g in (2, 4, 8, 12, 16, 20)]
    assert counts == sorted(counts) and counts[0] < counts[-1] < 47
    assert plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=None).gpu_layers == 0


def test_offload_order_is_the_output_head_first() -> None:
    shape = h100_27b_q4()
    none_gpu, none_cpu = split(shape, 8192, 0)
    head_gpu, head_cpu = split(shape, 8192, 1)
    assert none_gpu == 0
    # n_gpu_layers=1 moves the output head (a copy of the tied embedding) and the logits'
    # compute peak; no repeating layer.
    compute = compute_bytes(shape, 8192)
    assert head_gpu == shape.output_bytes + shape.embd_bytes + compute.output
    assert split(shape, 8192, 47) == split(shape, 8192, 99)  # clamped to every layer
    all_gpu, all_cpu = split(shape, 8192, 47)
    assert all_cpu == shape.embd_bytes + compute.logits
    assert all_gpu > head_gpu and all_cpu < head_cpu < none_cpu


def test_verdicts_for_ram_and_too_little_ram() -> None:
    shape = h100_27b_q4()
    fits = plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=None)
    assert fits.fits_ram and fits.gpu_layers == 0 and fits.gpu_bytes == 0
    assert fits.verdict.startswith("27B Q4_K_M at 8192 ctx fits in RAM: 16.9 GiB weights")
    short = plan_memory(shape, 8192, free_ram=8 * GIB, free_vram=None)
    assert not short.fits_ram
    assert re.fullmatch(
        r"27B Q4_K_M at 8192 ctx does not fit: needs 20\.\d GiB of RAM, have 8\.00 GiB free",
        short.verdict,
    )
    forced = plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=4 * GIB, gpu_layers="all")
    assert not forced.fits_vram and "does not fit on the GPU with 47 layers" in forced.verdict
    partial = plan_memory(shape, 8192, free_ram=64 * GIB, free_vram=12 * GIB)
    assert f"{partial.gpu_layers} of 47 layers on the GPU" in partial.verdict
    assert "\n" not in partial.verdict


def test_plan_offload_auto() -> None:
    # On a CPU build auto means the CPU, silently, even when a number was planned.
    assert plan_offload(None, "auto", False, 12) == plan_offload(None, "auto", False)
    assert plan_offload(None, "auto", False).n_gpu_layers == 0
    assert plan_offload(None, "auto", False).warning is None
    assert plan_offload(False, "auto", True, 12).n_gpu_layers == 0
    assert plan_offload(True, "auto", False).warning.startswith("GPU requested")
    assert (
        plan_offload(None, "auto", True, 12).n_gpu_layers,
        plan_offload(None, "auto", True, 12).device,
    ) == (12, "gpu")
    assert plan_offload(None, "auto", True, None).n_gpu_layers == -1  # VRAM unknown: all
    nothing = plan_offload(None, "auto", True, 0)
    assert nothing.device == "cpu" and "not even one layer" in nothing.warning


def test_gpu_layers_setting_accepts_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().gpu_layers == "auto"
    assert parse_gpu_layers("AUTO") == "auto" and parse_gpu_layers("all") == "all"
    assert parse_gpu_layers("7") == 7
    with pytest.raises(UsageError, match="a number, 'all' or 'auto'"):
        parse_gpu_layers("most")
    config = tmp_path / "config.toml"
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    config.write_text('gpu_layers = "auto"\n')
    assert build_settings().gpu_layers == "auto"
    assert build_settings(gpu_layers="12").gpu_layers == 12
    config.write_text('gpu_layers = "most"\n')
    with pytest.raises(UsageError, match=r"gpu_layers \(--gpu-layers\).*'all' or 'auto'"):
        build_settings()


# --- against what llama.cpp allocates -------------------------------------------------


def reader_meta(path: Path) -> SimpleNamespace:
    """Key/values and tensor sizes through the gguf package's reader (another reader than
    gemma-chat's own, so the two are checked against each other)."""
    reader = gguf.GGUFReader(path)
    kv = {name: field.contents() for name, field in reader.fields.items()}
    tensors = [
        SimpleNamespace(name=t.name, n_bytes=int(t.n_bytes), shape=[int(d) for d in t.shape])
        for t in reader.tensors
    ]
    return SimpleNamespace(kv=kv, tensors=tensors)


def test_both_readers_give_the_same_shape(tiny_models) -> None:
    from gemma_chat.models.gguf_meta import read_gguf_meta

    path = tiny_models["runaway"].path
    ours = ModelShape.from_meta(read_gguf_meta(path))
    assert ours == ModelShape.from_meta(reader_meta(path))
    assert ours.architecture == "gemma2" and ours.n_layer == 2 and ours.n_swa == 512
    assert ours.weights_bytes == sum(t.n_bytes for t in gguf.GGUFReader(path).tensors)


def llama_cpp_buffers(monkeypatch: pytest.MonkeyPatch, path: Path, n_ctx: int, flash_attn: bool):
    """Load the model for real and sum the buffer sizes llama.cpp logs, in bytes."""
    from gemma_chat.backend import llama_log
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan

    llama_log.clear()
    backend = LlamaBackend(path, n_ctx=n_ctx, offload=OffloadPlan(0, "cpu"), flash_attn=flash_attn)
    try:
        found: dict[str, float] = collections.defaultdict(float)
        for line in llama_log.recent():
            match = re.search(r"\b(model|KV|compute|output) buffer size =\s*([\d.]+) MiB", line)
            if match:
                found[match.group(1)] += float(match.group(2)) * MIB
    finally:
        backend.close()
    assert found["model"] and found["KV"] and found["compute"], "llama.cpp's log changed"
    return found


@pytest.fixture(scope="module")
def demo_shape(demo_path: Path) -> ModelShape:
    from gemma_chat.models.gguf_meta import read_gguf_meta

    return ModelShape.from_meta(read_gguf_meta(demo_path))


def within(estimate: float, actual: float, tolerance: float = 0.15) -> bool:
    return abs(estimate - actual) <= tolerance * actual


@pytest.mark.slow
@pytest.mark.parametrize(("n_ctx", "flash_attn"), [(2048, True), (8192, True), (4096, False)])
def test_demo_model_matches_llama_cpp(
    monkeypatch, demo_path, demo_shape, n_ctx, flash_attn
) -> None:
    actual = llama_cpp_buffers(monkeypatch, demo_path, n_ctx, flash_attn)
    plan = plan_memory(demo_shape, n_ctx, free_ram=64 * GIB, free_vram=None, flash_attn=flash_attn)
    assert within(plan.weights, actual["model"])
    assert within(plan.kv_cache, actual["KV"])
    assert within(plan.compute, actual["compute"] + actual["output"])
    assert within(plan.total, sum(actual.values()))
    assert plan.cpu_bytes == plan.total


@pytest.mark.slow
@pytest.mark.parametrize(("n_ctx", "flash_attn"), [(2048, True), (8192, True), (2048, False)])
def test_tiny_gemma2_matches_llama_cpp(monkeypatch, tiny_models, n_ctx, flash_attn) -> None:
    path = tiny_models["runaway"].path
    shape = ModelShape.from_meta(reader_meta(path))
    actual = llama_cpp_buffers(monkeypatch, path, n_ctx, flash_attn)
    plan = plan_memory(shape, n_ctx, free_ram=64 * GIB, free_vram=None, flash_attn=flash_attn)
    assert within(plan.weights, actual["model"])
    assert within(plan.kv_cache, actual["KV"])
    assert within(plan.compute, actual["compute"] + actual["output"])
    assert within(plan.total, sum(actual.values()))


# --- auto GPU layers in the loader, with injected GPU support and VRAM -----------------


def fake_gpu(free: float) -> Gpu:
    return Gpu("Fake GPU", int(free), int(free), "test")


def test_auto_offload_with_injected_vram(demo_path: Path, demo_shape: ModelShape) -> None:
    info = inspect_model(demo_path)
    notes: list[str] = []

    def offload(settings: Settings, supported: bool, gpus: list[Gpu]) -> OffloadPlan:
        return offload_for(settings, info, 8192, notes.append, supported=supported, gpus=gpus)

    auto = Settings()
    assert offload(auto, False, [fake_gpu(80 * GIB)]) == OffloadPlan(0, "cpu")  # CPU build
    assert offload(auto, True, [fake_gpu(80 * GIB)]) == OffloadPlan(19, "gpu")  # 18 + head
    some = offload(auto, True, [fake_gpu(1.5 * GIB)])
    expected = plan_memory(demo_shape, 8192, free_ram=GIB, free_vram=int(1.5 * GIB))
    assert some == OffloadPlan(expected.gpu_layers, "gpu") and 1 < some.n_gpu_layers < 19
    assert offload(auto, True, []) == OffloadPlan(-1, "gpu")  # VRAM unknown: llama.cpp decides
    assert offload(Settings(gpu=False), True, [fake_gpu(80 * GIB)]) == OffloadPlan(0, "cpu")
    assert offload(Settings(gpu_layers=5), True, [fake_gpu(GIB)]) == OffloadPlan(5, "gpu")
    assert notes == []
    none = offload(auto, True, [fake_gpu(600 * MIB)])
    assert none.n_gpu_layers == 0 and "not even one layer" in (none.warning or "")


def test_auto_offload_reads_no_metadata_on_a_cpu_build(tmp_path: Path, demo_path: Path) -> None:
    info = dataclasses.replace(inspect_model(demo_path), path=str(tmp_path / "gone.gguf"))
    notes: list[str] = []
    plan = offload_for(Settings(), info, 8192, notes.append, supported=False, gpus=None)
    assert plan == OffloadPlan(0, "cpu") and notes == []
    # On a GPU build the planner needs the file: without it, every layer, with a warning.
    plan = offload_for(Settings(), info, 8192, notes.append, supported=True, gpus=[fake_gpu(GIB)])
    assert plan == OffloadPlan(-1, "gpu")
    assert len(notes) == 1 and "model file not found" in notes[0] and "every layer" in notes[0]


@pytest.mark.slow
def test_load_backend_passes_the_planned_layers_to_llama_cpp(
    monkeypatch: pytest.MonkeyPatch, demo_path: Path, demo_shape: ModelShape
) -> None:
    from gemma_chat.backend import local
    from gemma_chat.planning import hardware

    free = int(1.4 * GIB)  # room for the output head and about 15 of the 18 layers
    monkeypatch.setattr(local, "gpu_offload_supported", lambda: True)
    monkeypatch.setattr(hardware, "gpus", lambda gpu_build: [fake_gpu(free)])
    notes: list[str] = []
    _, backend = load_backend(Settings(model=str(demo_path), ctx=2048), notes.append)
    try:
        expected = plan_memory(demo_shape, 2048, free_ram=GIB, free_vram=free).gpu_layers
        # This CPU build ignores the number, but it is what llama.cpp was given.
        assert backend.llama.model_params.n_gpu_layers == expected
        assert 0 < expected < 19 and notes == []
        assert backend.info.device == "cpu"
    finally:
        backend.close()
