"""The memory planner: what a model needs at a context size, and how many layers fit on
the GPU. Pure: the inputs are a :class:`~gemma_chat.planning.model_shape.ModelShape` and numbers.

The estimates follow what the llama.cpp vendored by llama-cpp-python 0.3.36 allocates:

* **Weights**: the tensors' bytes. ``blk.N.*`` tensors belong to layer N; the token
  embedding stays on the CPU; the output head (a copy of the embedding when tied) goes to
  the GPU with the first offloaded layer (llama.cpp's ``n_gpu_layers`` counts it).
* **KV cache**: per layer ``n_head_kv * head_dim`` keys and values per cell, at the cache
  type's size (f16: 2 bytes), for n_ctx rounded up to 256 cells. A sliding-window layer
  keeps ``min(n_ctx, window + n_ubatch)`` cells (rounded up to 256), but only without
  ``swa_full``, and llama-cpp-python's default is ``swa_full=True``: every layer keeps
  all n_ctx cells.
* **Compute buffer**: the peak of llama.cpp's graph for one 512-token micro-batch; see
  :func:`compute_bytes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from gemma_chat.planning.model_shape import ModelShape
from gemma_chat.units import format_bytes

MIB = 1024**2
GIB = 1024**3
CTX_PAD = 256
"""llama.cpp pads n_ctx, and the sliding-window cache, to a multiple of this."""
N_UBATCH = 512
"""llama-cpp-python's micro-batch size (gemma-chat keeps the default)."""

# ggml cache types: (block size, bytes per block).
KV_TYPES: dict[str, tuple[int, int]] = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34), "q5_1": (32, 24),
    "q5_0": (32, 22), "q4_1": (32, 20), "q4_0": (32, 18), "iq4_nl": (32, 18),
}  # fmt: skip


@dataclass(frozen=True)
class SafetyMargin:
    """VRAM kept free when choosing layers: a share of the free VRAM plus a fixed amount
    (the CUDA context, other processes, fragmentation)."""

    fraction: float = 0.10
    fixed: int = 512 * MIB

    def of(self, free: int) -> int:
        """The bytes to keep free out of ``free``."""
        return int(free * self.fraction) + self.fixed


DEFAULT_MARGIN = SafetyMargin()


def pad(value: int, step: int = CTX_PAD) -> int:
    """Round up to a multiple of ``step``."""
    return -(-value // step) * step


def kv_row_bytes(n_values: int, cache_type: str) -> int:
    """Bytes of ``n_values`` cache entries of ``cache_type`` (ggml's row size)."""
    try:
        block, size = KV_TYPES[cache_type.lower()]
    except KeyError:
        raise ValueError(f"unknown KV cache type {cache_type!r}") from None
    return -(-n_values // block) * size


def kv_cells(shape: ModelShape, n_ctx: int, *, swa_full: bool = True) -> tuple[int, int]:
    """Cells of the full-attention cache and of the sliding-window cache."""
    cells = pad(n_ctx)
    if swa_full or not shape.n_swa:
        return cells, cells
    return cells, pad(min(cells, shape.n_swa + min(N_UBATCH, cells)))


def kv_cache_bytes(
    shape: ModelShape,
    n_ctx: int,
    *,
    type_k: str = "f16",
    type_v: str = "f16",
    swa_full: bool = True,
) -> tuple[int, ...]:
    """Bytes of the KV cache of each layer at ``n_ctx``.

    Args:
        shape: The model.
        n_ctx: The context size (rounded up to 256 like llama.cpp does).
        type_k: The key cache type (``f16``, ``q8_0``, ``q4_0``, ...).
        type_v: The value cache type (quantized needs flash attention in llama.cpp).
        swa_full: Sliding-window layers keep every cell (llama-cpp-python's default).
    """
    full, window = kv_cells(shape, n_ctx, swa_full=swa_full)
    sizes = []
    for il in range(shape.n_layer):
        cells = window if shape.swa_layers[il] else full
        n_kv = shape.n_head_kv[il]
        keys = kv_row_bytes(n_kv * shape.head_dim_k, type_k)
        values = kv_row_bytes(n_kv * shape.head_dim_v, type_v)
        sizes.append(cells * (keys + values))
    return tuple(sizes)


@dataclass(frozen=True)
class ComputeEstimate:
    """llama.cpp's compute buffer, in its two peaks.

    Attributes:
        layers: The peak inside the repeating layers (attention or FFN).
        output: The peak at the output head (the logits of a whole micro-batch).
        logits: The output buffer: one token's logits, kept on the CPU.
    """

    layers: int
    output: int
    logits: int

    @property
    def total(self) -> int:
        """The whole model on one device."""
        return max(self.layers, self.output) + self.logits


def compute_bytes(
    shape: ModelShape, n_ctx: int, *, flash_attn: bool = True, swa_full: bool = True
) -> ComputeEstimate:
    """Estimate llama.cpp's compute buffer at ``n_ctx``.

    ggml reserves the graph of one full micro-batch (u = 512 tokens) and re-uses a
    tensor's memory once its last reader has run, so the buffer is the largest set of
    f32 activations alive at once. Measured with llama.cpp 0.3.36 on the CPU, over
    synthetic Gemma GGUFs that vary one width at a time (each term matched to 1-3%):

    * the attention masks live through every layer: one ``n_kv x u`` mask per cache
      (two with sliding-window layers), f16 with flash attention, f32 without;
    * attention: ``3 n_embd + q + k + v`` columns of u values, and without flash
      attention also the ``n_head x n_kv x u`` score matrix (soft-max and soft-capping
      run in place) and two more ``q``-wide columns;
    * FFN: gate, up and their product (``3 n_ff``) plus ``3 n_embd + q``;
    * output head: the logits of the micro-batch, ``(n_vocab + 2 n_embd) x u``. For a
      Gemma vocabulary (256k) this is the peak: 514.5 MiB for the 270M demo model.
    """
    full, window = kv_cells(shape, n_ctx, swa_full=swa_full)
    ubatch = min(N_UBATCH, pad(n_ctx))
    column = ubatch * 4  # one f32 activation per token of the micro-batch
    has_swa, has_full = any(shape.swa_layers), not all(shape.swa_layers)
    mask_cells = (full if has_full else 0) + (window if has_swa else 0)
    masks = mask_cells * ubatch * (2 if flash_attn else 4)
    q = max(h * shape.head_dim_k for h in shape.n_head)
    k = max(h * shape.head_dim_k for h in shape.n_head_kv)
    v = max(h * shape.head_dim_v for h in shape.n_head_kv)
    attention = (3 * shape.n_embd + q + k + v) * column + masks
    if not flash_attn:
        attention += 2 * q * column + max(shape.n_head) * full * column
    ffn = (3 * shape.n_ff + 3 * shape.n_embd + q) * column + masks
    output = (shape.n_vocab + 2 * shape.n_embd) * column
    return ComputeEstimate(max(attention, ffn), output, shape.n_vocab * 4)


@dataclass(frozen=True)
class MemoryPlan:
    """Where a model's memory goes at one context size.

    Attributes:
        label: The model as verdicts name it (``27B Q4_K_M``).
        n_ctx: The context size, rounded up to 256.
        weights: Bytes of the weights (all on one device).
        kv_cache: Bytes of the KV cache.
        compute: Bytes of the compute and output buffers (all on one device).
        gpu_layers: The ``n_gpu_layers`` to give llama.cpp (0 to ``max_layers``).
        max_layers: Every layer plus the output head: ``n_layer + 1``.
        gpu_bytes: What the offloaded part needs in VRAM.
        cpu_bytes: What stays in RAM.
        free_ram: Free RAM, as measured.
        free_vram: Free VRAM, or None without a usable GPU.
        fits_ram: ``cpu_bytes`` fits in the free RAM.
        fits_vram: ``gpu_bytes`` fits in the free VRAM less the margin.
        verdict: One line for people.
    """

    label: str
    n_ctx: int
    weights: int
    kv_cache: int
    compute: int
    gpu_layers: int
    max_layers: int
    gpu_bytes: int
    cpu_bytes: int
    free_ram: int
    free_vram: int | None
    fits_ram: bool
    fits_vram: bool
    verdict: str

    @property
    def total(self) -> int:
        """Everything, on one device."""
        return self.weights + self.kv_cache + self.compute

    def to_dict(self) -> dict[str, object]:
        """The plan as JSON-ready values (bytes as integers)."""
        return {**asdict(self), "total": self.total}


def split(
    shape: ModelShape,
    n_ctx: int,
    gpu_layers: int,
    *,
    flash_attn: bool = True,
    type_k: str = "f16",
    type_v: str = "f16",
    swa_full: bool = True,
) -> tuple[int, int]:
    """Bytes on the GPU and on the CPU with ``gpu_layers`` given to llama.cpp.

    llama.cpp offloads the output head first, then the last ``gpu_layers - 1`` layers,
    each with its KV cache. The token embedding never leaves the CPU. Each device with
    layers needs the layers' compute peak; the one holding the head also its logits.
    """
    n_gpu = max(0, min(gpu_layers, shape.n_layer + 1))
    first_gpu = shape.n_layer - max(0, n_gpu - 1)  # repeating layers first_gpu.. are offloaded
    kv = kv_cache_bytes(shape, n_ctx, type_k=type_k, type_v=type_v, swa_full=swa_full)
    compute = compute_bytes(shape, n_ctx, flash_attn=flash_attn, swa_full=swa_full)
    cpu = shape.embd_bytes + sum(shape.layer_bytes[:first_gpu]) + sum(kv[:first_gpu])
    cpu += compute.logits
    if n_gpu == 0:
        cpu += shape.output_bytes + max(compute.layers, compute.output)
        return 0, cpu
    gpu = shape.output_bytes + (shape.embd_bytes if shape.tied_output else 0)
    gpu += sum(shape.layer_bytes[first_gpu:]) + sum(kv[first_gpu:])
    gpu += max(compute.output, compute.layers if first_gpu < shape.n_layer else 0)
    if first_gpu > 0:
        cpu += compute.layers
    return gpu, cpu


def plan_memory(
    shape: ModelShape,
    n_ctx: int,
    *,
    free_ram: int,
    free_vram: int | None,
    gpu_layers: int | Literal["all", "auto"] = "auto",
    margin: SafetyMargin = DEFAULT_MARGIN,
    gpu_name: str | None = None,
    flash_attn: bool = True,
    type_k: str = "f16",
    type_v: str = "f16",
    swa_full: bool = True,
) -> MemoryPlan:
    """Plan a model's memory at ``n_ctx`` and choose the layers to offload.

    Args:
        shape: The model.
        n_ctx: The context size.
        free_ram: Free RAM in bytes.
        free_vram: Free VRAM in bytes (summed over GPUs), or None without a usable GPU.
        gpu_layers: ``auto`` picks the most layers that fit in ``free_vram`` less the
            margin (0 without a GPU); ``all`` or a number is taken as asked.
        margin: VRAM kept free by ``auto``.
        gpu_name: The GPU, for the verdict.
        flash_attn: Whether flash attention is on (it shrinks the compute buffer).
        type_k: Key cache type.
        type_v: Value cache type.
        swa_full: Sliding-window layers keep every cell (llama-cpp-python's default).
    """
    options = {"flash_attn": flash_attn, "type_k": type_k, "type_v": type_v, "swa_full": swa_full}
    max_layers = shape.n_layer + 1
    budget = max(0, free_vram - margin.of(free_vram)) if free_vram else 0
    if gpu_layers == "auto":
        layers = 0
        for count in range(max_layers, 0, -1):
            if split(shape, n_ctx, count, **options)[0] <= budget:
                layers = count
                break
    elif gpu_layers == "all" or int(gpu_layers) < 0:
        layers = max_layers
    else:
        layers = min(int(gpu_layers), max_layers)
    gpu, cpu = split(shape, n_ctx, layers, **options)
    kv = sum(kv_cache_bytes(shape, n_ctx, type_k=type_k, type_v=type_v, swa_full=swa_full))
    compute = compute_bytes(shape, n_ctx, flash_attn=flash_attn, swa_full=swa_full).total
    plan = MemoryPlan(
        label=shape.label,
        n_ctx=pad(n_ctx),
        weights=shape.weights_bytes,
        kv_cache=kv,
        compute=compute,
        gpu_layers=layers,
        max_layers=max_layers,
        gpu_bytes=gpu,
        cpu_bytes=cpu,
        free_ram=free_ram,
        free_vram=free_vram,
        fits_ram=cpu <= free_ram,
        # Unknown free VRAM (a GPU build that cannot say) is not called a failure.
        fits_vram=layers == 0 or free_vram is None or gpu <= free_vram,
        verdict="",
    )
    return _with_verdict(plan, gpu_name)


def _with_verdict(plan: MemoryPlan, gpu_name: str | None) -> MemoryPlan:
    head = f"{plan.label} at {plan.n_ctx} ctx"
    parts = (
        f"{format_bytes(plan.weights)} weights + {format_bytes(plan.kv_cache)} KV + "
        f"{format_bytes(plan.compute)} compute"
    )
    on = f" ({gpu_name})" if gpu_name else ""
    vram = (
        f" of {format_bytes(plan.free_vram)} free VRAM"
        if plan.free_vram is not None
        else " of VRAM"
    )
    if not plan.fits_vram:
        text = (
            f"{head} does not fit on the GPU{on} with {plan.gpu_layers} layers: needs "
            f"{format_bytes(plan.gpu_bytes)}, have {format_bytes(plan.free_vram or 0)} free"
        )
    elif not plan.fits_ram:
        where = f"besides {format_bytes(plan.gpu_bytes)} on the GPU, " if plan.gpu_layers else ""
        text = (
            f"{head} does not fit: needs {format_bytes(plan.cpu_bytes)} of RAM, {where}"
            f"have {format_bytes(plan.free_ram)} free"
        )
    elif plan.gpu_layers == plan.max_layers:
        text = f"{head} fits on the GPU{on}: {parts} = {format_bytes(plan.gpu_bytes)}{vram}"
    elif plan.gpu_layers:
        text = (
            f"{head}: {plan.gpu_layers} of {plan.max_layers} layers on the GPU{on}: "
            f"{format_bytes(plan.gpu_bytes)}{vram}; the rest in RAM: "
            f"{format_bytes(plan.cpu_bytes)} of {format_bytes(plan.free_ram)} free"
        )
    else:
        text = (
            f"{head} fits in RAM: {parts} = {format_bytes(plan.cpu_bytes)} of "
            f"{format_bytes(plan.free_ram)} free"
        )
    return MemoryPlan(**{**asdict(plan), "verdict": text})
