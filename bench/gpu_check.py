"""A GPU check, ready to run on a machine with an NVIDIA GPU and a CUDA build.

It loads a GGUF with ``--gpu-layers auto`` and reports, side by side with the same model
on the CPU:

* the layers llama.cpp actually offloaded, and the planner's choice;
* decode and prompt tokens/s on the GPU and on the CPU (greedy, alternating, medians);
* the planner's predicted VRAM against what ``nvidia-smi`` shows in use;
* the tiny Gemma 2 models' stop rules and KV-cache reuse, on the GPU;
* switching GPU -> CPU -> GPU in one process while keeping a conversation.

It writes a JSON report (``--out``, default ``gpu_check.json``) and prints a short table.
Without a GPU build or a GPU it says so in one line and exits 0.

``--rehearse`` runs every step anyway, with the CPU standing in for the GPU (llama.cpp
offloads nothing): a check of the script itself on a machine without a GPU, so that it
does not first fail on the day one is lent. Its figures compare the CPU with itself, and
the report says ``"rehearsal": true``. The test suite rehearses it on the demo model.

Usage: python bench/gpu_check.py [--model PATH] [--tokens 128] [--rounds 3] [--out FILE]
       [--rehearse]
Install a CUDA build first:
    CMAKE_ARGS="-DGGML_CUDA=on" pip install llama-cpp-python --no-cache-dir
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTION = "Tell me a story about a cat."


def nvidia_used_mib() -> int | None:
    """Memory in use on the first GPU, as nvidia-smi reports it."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def gpu_available() -> str | None:
    """None when the check can run, else why not (one line)."""
    from gemma_chat.backend.local import gpu_offload_supported
    from gemma_chat.planning import hardware

    if not gpu_offload_supported():
        return "this llama-cpp-python build has no GPU support (see the README's GPU section)"
    if not hardware.gpus(gpu_build=True):
        return "llama.cpp sees no GPU on this machine"
    return None


def load(settings_update: dict, model: str, n_ctx: int):
    from gemma_chat.config.settings import Settings
    from gemma_chat.models.loader import load_backend

    settings = Settings(model=model, ctx=n_ctx, speculative="off", **settings_update)
    return load_backend(settings, lambda line: print(line, file=sys.stderr))


def speeds(backend, tokens: int) -> tuple[float, float]:
    """(prompt tok/s, decode tok/s) of one greedy reply from an empty cache."""
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import RepeatGuard, Sampling
    from gemma_chat.generation.engine import Engine

    backend.clear_state()
    engine = Engine(
        backend, Sampling(temperature=0, seed=1, max_tokens=tokens), RepeatGuard(enabled=False)
    )
    conversation = Conversation()
    conversation.add_user((HERE.parent / "README.md").read_text()[:4000] + "\n\n" + QUESTION)
    done = engine.reply(conversation)
    prompt_rate = done.stats.evaluated_tokens / done.stats.ttft_s if done.stats.ttft_s else 0.0
    return prompt_rate, done.stats.tokens_per_s or 0.0


TINY_CHECKS = (
    "tests/test_engine_stops.py",
    "tests/test_speculative.py",
    "tests/test_context.py",
    "-k",
    "tiny or stop or cancel or follow_up",
)
"""The pytest selection of :func:`tiny_checks`: the stop rules (with and without
speculation), cancelling, and the KV cache's reuse across turns
(``test_follow_up_turns_evaluate_only_new_tokens``)."""


def tiny_checks() -> dict:
    """The test suite's stop-rule and KV-reuse checks on the tiny models, on the GPU."""
    env = {**os.environ, "GEMMA_CHAT_TEST_GPU": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", *TINY_CHECKS]
    proc = subprocess.run(
        cmd, cwd=HERE.parent, capture_output=True, text=True, env=env, check=False
    )
    return {"passed": proc.returncode == 0, "summary": proc.stdout.strip().splitlines()[-1:]}


def toggle(model: str, n_ctx: int) -> dict:
    """GPU -> CPU -> GPU in one process, keeping the conversation."""
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    conversation = Conversation()
    replies = []
    for device, question in (
        ("gpu", "Name a colour."),
        ("cpu", "And another?"),
        ("gpu", "Which did you say first?"),
    ):
        _, backend = load({"gpu": device == "gpu", "gpu_layers": "auto"}, model, n_ctx)
        conversation.add_user(question)
        done = Engine(backend, Sampling(temperature=0, seed=1, max_tokens=32)).reply(conversation)
        replies.append(
            {
                "device": backend.info.device,
                "gpu_layers": backend.info.gpu_layers,
                "stop": done.stop_reason.value,
            }
        )
        backend.close()
    return {"turns": len(conversation.turns), "replies": replies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--rehearse", action="store_true", help="run on the CPU, as a check")
    args = parser.parse_args()
    why = gpu_available()
    if why is not None and not args.rehearse:
        print(f"gpu_check: no GPU to check: {why}")
        return 0
    if args.rehearse:
        print(f"gpu_check: a rehearsal: the CPU stands in for the GPU ({why or 'a GPU is here'})")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GEMMA_CHAT_DATA_DIR"] = tmp  # never the user's own history
        report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def run(args: argparse.Namespace) -> dict:
    from gemma_chat.config.settings import Settings
    from gemma_chat.models.loader import memory_plan
    from gemma_chat.models.resolve import resolve_model
    from gemma_chat.planning import hardware

    used_before = nvidia_used_mib()
    path = resolve_model(args.model)
    plan = memory_plan(
        Settings(ctx=args.ctx), path, args.ctx, supported=True, gpus=hardware.gpus(gpu_build=True)
    )
    _, gpu = load({"gpu": True, "gpu_layers": "auto"}, args.model, args.ctx)
    used_after = nvidia_used_mib()
    _, cpu = load({"gpu": False}, args.model, args.ctx)
    rates: dict[str, list[tuple[float, float]]] = {"gpu": [], "cpu": []}
    for _ in range(args.rounds):
        rates["gpu"].append(speeds(gpu, args.tokens))
        rates["cpu"].append(speeds(cpu, args.tokens))
    med = {
        k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v))
        for k, v in rates.items()
    }
    report = {
        "rehearsal": args.rehearse,
        "model": path.name,
        "gpu_layers_offloaded": gpu.info.gpu_layers,
        "gpu_layers_planned": plan.gpu_layers,
        "max_layers": plan.max_layers,
        "vram_predicted_mib": round(plan.gpu_bytes / 2**20),
        "vram_used_mib": None
        if used_before is None or used_after is None
        else used_after - used_before,
        "prompt_tok_s": {"gpu": med["gpu"][0], "cpu": med["cpu"][0]},
        "decode_tok_s": {"gpu": med["gpu"][1], "cpu": med["cpu"][1]},
        "decode_ratio": med["gpu"][1] / med["cpu"][1] if med["cpu"][1] else None,
        "rounds": rates,
    }
    gpu.close()
    cpu.close()
    report["toggle"] = toggle(args.model, args.ctx)
    report["tiny_checks"] = tiny_checks()
    return report


def print_table(report: dict) -> None:
    rows = [
        ("rehearsal (CPU for GPU)", "yes" if report["rehearsal"] else "no"),
        (
            "layers offloaded (planned)",
            f"{report['gpu_layers_offloaded']} "
            f"({report['gpu_layers_planned']}/{report['max_layers']})",
        ),
        (
            "VRAM predicted / used (MiB)",
            f"{report['vram_predicted_mib']} / {report['vram_used_mib']}",
        ),
        (
            "prompt tok/s GPU / CPU",
            f"{report['prompt_tok_s']['gpu']:.0f} / {report['prompt_tok_s']['cpu']:.0f}",
        ),
        (
            "decode tok/s GPU / CPU",
            f"{report['decode_tok_s']['gpu']:.1f} / {report['decode_tok_s']['cpu']:.1f}",
        ),
        ("GPU/CPU/GPU toggle", json.dumps(report["toggle"]["replies"])),
        ("tiny-model checks on the GPU", "passed" if report["tiny_checks"]["passed"] else "FAILED"),
    ]
    for name, value in rows:
        print(f"{name:<30} {value}")


if __name__ == "__main__":
    raise SystemExit(main())
