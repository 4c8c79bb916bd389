"""Benchmark: a ~60,000-token text through ``gemma-chat ask -f`` (map-reduce) on the demo
model, side by side with one plain pass over the same tokens (prompt evaluation only).

Both run in fresh processes with the same model, context, threads and flash attention,
alternating for ``--rounds`` rounds (medians reported):

* **map-reduce**: ``gemma-chat ask -f big.txt QUESTION --json`` (greedy, ``-n`` tokens a
  call); from its ``long_input`` report: parts, model calls, prompt tokens evaluated (all
  calls) and generated tokens;
* **plain pass**: the same text's tokens evaluated once, in windows of the context size
  (each window a fresh prompt: BOS plus up to ``n_ctx - 1`` tokens), through gemma-chat's
  own llama.cpp backend, stopping at the first sampled token. It is the least any
  answer over the whole text costs on this model: every token evaluated once.

Reported: calls; tokens evaluated against the input size (the overhead of the prompts
and notes); wall time of map-reduce against the plain pass. Runs use an empty temporary
``GEMMA_CHAT_DATA_DIR``. The machine's load (``os.getloadavg``) is printed with the
figures.

Usage: python bench/long_input.py [--tokens 60000] [--ctx 8192] [--max-tokens 64]
       [--rounds 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "Which crate holds the most pears, and on which day was it packed?"


def build_text(tokens: int) -> tuple[str, int]:
    """Paragraphs of inventory notes until the demo tokenizer counts ``tokens``."""
    from gemma_chat.backend.local import load_vocab
    from gemma_chat.models.demo import demo_model

    vocab = load_vocab(demo_model())
    paragraphs, count, i = [], 0, 0
    while count < tokens:
        paragraph = (
            f"Crate {i} was packed on day {i % 365 + 1} in warehouse {i % 7}. It holds "
            f"{(i * 37) % 91} pears, {(i * 13) % 47} apples and {(i * 7) % 23} plums. The "
            f"driver noted that the seal was {'intact' if i % 5 else 'broken'} and the "
            f"temperature was {(i * 3) % 9 + 2} degrees."
        )
        paragraphs.append(paragraph)
        count += len(vocab.tokenize(paragraph + "\n\n"))
        i += 1
    text = "\n\n".join(paragraphs) + "\n"
    return text, len(vocab.tokenize(text))


def run_map_reduce(path: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One ``ask -f`` run; its wall time and long_input report."""
    cmd = [sys.executable, "-m", "gemma_chat", "ask", "-m", "demo", "-f", str(path), QUESTION]
    cmd += ["--json", "--no-save", "--temp", "0", "--seed", "1", "-n", str(args.max_tokens)]
    cmd += ["--ctx", str(args.ctx), "-t", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ask failed: {proc.stderr.decode()[-2000:]}")
    result = json.loads(proc.stdout)
    report = result["long_input"]
    return {
        "wall_s": wall,
        "chunks": report["chunks"],
        "calls": report["calls"],
        "input_tokens": report["input_tokens"],
        "evaluated_tokens": report["evaluated_tokens"],
        "generated_tokens": sum(step["completion_tokens"] for step in report["steps"]),
        "answer": result["text"],
    }


def run_plain(path: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One plain pass (this script with ``--plain-pass``) in a fresh process."""
    cmd = [sys.executable, __file__, "--plain-pass", str(path), "--ctx", str(args.ctx)]
    cmd += ["--threads", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"plain pass failed: {proc.stderr.decode()[-2000:]}")
    return {"wall_s": wall, **json.loads(proc.stdout)}


def plain_pass(path: Path, ctx: int, threads: int) -> None:
    """Evaluate the text's tokens once, window by window; print the counts as JSON."""
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.config.settings import Sampling
    from gemma_chat.models.demo import demo_model

    backend = LlamaBackend(demo_model(), n_ctx=ctx, offload=OffloadPlan(0, "cpu"), threads=threads)
    ids = backend.tokenizer.tokenize(path.read_text())
    window = ctx - 2  # BOS, and room for the one sampled token
    greedy = Sampling(temperature=0.0, seed=1, max_tokens=1)
    start = time.perf_counter()
    evaluated = 0
    for begin in range(0, len(ids), window):
        prompt = [backend.tokenizer.bos_id, *ids[begin : begin + window]]
        tokens = backend.generate(prompt, greedy, 1)
        next(tokens)  # the prompt is evaluated, one token sampled
        tokens.close()
        evaluated += len(prompt)
    print(json.dumps({"eval_s": time.perf_counter() - start, "evaluated_tokens": evaluated}))
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--plain-pass", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_pass is not None:
        plain_pass(args.plain_pass, args.ctx, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GEMMA_CHAT_DATA_DIR": str(Path(tmp) / "data")}
        text, tokens = build_text(args.tokens)
        path = Path(tmp) / "big.txt"
        path.write_text(text)
        print(f"input: {tokens:,} tokens ({len(text.encode()):,} bytes); load {os.getloadavg()}")
        mapped, plain = [], []
        for round_ in range(args.rounds):
            mapped.append(run_map_reduce(path, args, env))
            plain.append(run_plain(path, args, env))
            walls = (mapped[-1]["wall_s"], plain[-1]["wall_s"])
            print(f"round {round_ + 1}: {walls[0]:.1f} s vs {walls[1]:.1f} s", flush=True)
        report(tokens, mapped, plain, args)


def report(tokens: int, mapped: list[dict], plain: list[dict], args: argparse.Namespace) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    last = mapped[-1]
    print(f"demo model, ctx {args.ctx}, {args.threads} threads, -n {args.max_tokens}, "
          f"{args.rounds} round(s), medians; load after: {os.getloadavg()}")  # fmt: skip
    print(f"parts: {last['chunks']}, model calls: {last['calls']}")
    print(
        f"tokens evaluated, map-reduce: {med(mapped, 'evaluated_tokens'):,.0f} "
        f"({med(mapped, 'evaluated_tokens') / tokens:.3f}x the input of {tokens:,}); "
        f"plain pass: {med(plain, 'evaluated_tokens'):,.0f}; generated: "
        f"{med(mapped, 'generated_tokens'):,.0f}"
    )
    print(
        f"wall time, map-reduce: {med(mapped, 'wall_s'):.1f} s; plain pass: "
        f"{med(plain, 'wall_s'):.1f} s (prompt evaluation {med(plain, 'eval_s'):.1f} s); "
        f"ratio {med(mapped, 'wall_s') / med(plain, 'wall_s'):.2f}"
    )
    print(f"answer: {last['answer'][:200]!r}")


if __name__ == "__main__":
    main()
