"""Benchmark: gemma-chat's decode speed and multi-turn time to first token.

Two measurements, side by side in one run, on the same model and threads:

1. Decode tokens/s of ``gemma-chat ask`` (a real subprocess, greedy, the repetition
   guard running but set never to fire) against ``raw_decode.py``, a raw llama.cpp loop
   through the low-level API with greedy sampling. The runs alternate, and the medians
   are compared: ratio = ask / raw (target >= 0.97).
2. Time to first token of turn 1 against turn 6 of one multi-turn session through the
   engine, with the KV cache re-used between turns; and turn 6 again with the cache
   cleared, to show what the re-use saves.

Usage: python bench/decode.py [--model PATH] [--tokens 256] [--rounds 5] [--threads N]
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
TURNS = [
    "Tell me a story about a cat.",
    "Now one about a dog.",
    "Which of the two is braver?",
    "Describe the cat in one sentence.",
    "Give the dog a name.",
    "Summarise both stories in two lines.",
]


def run_json(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def decode_ratio(model: str, tokens: int, rounds: int, threads: int, n_ctx: int) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        # Keep the guard's per-token work, but never let it end the run early.
        config.write_text("[repeat_guard]\nmin_tokens = 1000000\n")
        env["GEMMA_CHAT_CONFIG"] = str(config)
        env["GEMMA_CHAT_DATA_DIR"] = tmp  # never the user's own history
        cli = [sys.executable, "-m", "gemma_chat"]
        common = ["-m", model, "--threads", str(threads), "--ctx", str(n_ctx)]
        ids = [
            t["id"]
            for t in run_json([*cli, "prompt", QUESTION, "--json", *common[:2]], env)["tokens"]
        ]
        ask_rates, raw_rates = [], []
        for _ in range(rounds):
            raw = run_json(
                [
                    sys.executable,
                    str(HERE / "raw_decode.py"),
                    model,
                    json.dumps(ids),
                    str(tokens),
                    str(threads),
                    str(n_ctx),
                ],
                env,
            )
            ask = run_json(
                [
                    *cli,
                    "ask",
                    QUESTION,
                    "--json",
                    "--temp",
                    "0",
                    "--max-tokens",
                    str(tokens),
                    *common,
                ],
                env,
            )
            if ask["completion_tokens"] < tokens // 2:
                raise SystemExit(f"ask stopped early ({ask['stop_reason']}); pick another prompt")
            raw_rates.append(raw["tokens_per_s"])
            ask_rates.append(ask["tokens_per_s"])
    raw_median, ask_median = statistics.median(raw_rates), statistics.median(ask_rates)
    return {
        "raw_tokens_per_s": raw_rates,
        "ask_tokens_per_s": ask_rates,
        "raw_median": raw_median,
        "ask_median": ask_median,
        "ratio": ask_median / raw_median,
    }


def ttft_turns(model: str, threads: int, n_ctx: int, max_tokens: int) -> dict:
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    backend = LlamaBackend(Path(model), n_ctx=n_ctx, offload=OffloadPlan(0, "cpu"), threads=threads)
    engine = Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=max_tokens))
    conversation = Conversation(system="You are a storyteller.")
    turns = []
    for question in TURNS:
        conversation.add_user(question)
        done = engine.reply(conversation)
        turns.append(
            {
                "prompt_tokens": done.stats.prompt_tokens,
                "evaluated_tokens": done.stats.evaluated_tokens,
                "ttft_s": done.stats.ttft_s,
            }
        )
    # Turn 6 again, from a cold cache: the cost the KV reuse avoids.
    conversation.turns.pop()
    backend.llama.reset()
    cold = engine.reply(conversation)
    backend.close()
    return {
        "turns": turns,
        "turn6_cold": {
            "prompt_tokens": cold.stats.prompt_tokens,
            "evaluated_tokens": cold.stats.evaluated_tokens,
            "ttft_s": cold.stats.ttft_s,
        },
        "ratio_turn6_turn1": turns[5]["ttft_s"] / turns[0]["ttft_s"],
        "ratio_turn6_cold_turn1": cold.stats.ttft_s / turns[0]["ttft_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--turn-tokens", type=int, default=64, help="max tokens per turn")
    args = parser.parse_args()
    if args.model is None:
        from gemma_chat.models.demo import demo_model

        demo = demo_model()
        if demo is None:
            raise SystemExit("no --model and the demo extra is not installed")
        args.model = str(demo)

    decode = decode_ratio(args.model, args.tokens, args.rounds, args.threads, args.ctx)
    ttft = ttft_turns(args.model, args.threads, args.ctx, args.turn_tokens)
    result = {
        "model": Path(args.model).name,
        "threads": args.threads,
        "decode": decode,
        "ttft": ttft,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "decode.json").write_text(json.dumps(result, indent=2))

    print(f"model {result['model']}, {args.threads} threads, ctx {args.ctx}")
    print(
        f"decode: ask {decode['ask_median']:.1f} tok/s, raw llama.cpp "
        f"{decode['raw_median']:.1f} tok/s, ratio {decode['ratio']:.3f} "
        f"(median of {args.rounds})"
    )
    for index, turn in enumerate(ttft["turns"], 1):
        print(
            f"turn {index}: prompt {turn['prompt_tokens']}, evaluated "
            f"{turn['evaluated_tokens']}, TTFT {turn['ttft_s'] * 1000:.1f} ms"
        )
    cold = ttft["turn6_cold"]
    print(f"turn 6 cold: evaluated {cold['evaluated_tokens']}, TTFT {cold['ttft_s'] * 1000:.1f} ms")
    print(
        f"TTFT ratio turn 6 / turn 1: {ttft['ratio_turn6_turn1']:.2f} with KV reuse, "
        f"{ttft['ratio_turn6_cold_turn1']:.2f} without"
    )


if __name__ == "__main__":
    main()
