"""Benchmark: speculative decoding (prompt lookup) against plain decoding.

Side by side in one run, on one model load, greedy, on three tasks:

a. quoting a piped text (grounded: the reply copies the prompt);
a2. editing a piped source file (a variable renamed: the reply copies the code);
b. summarising the same piped text;
c. free-form chat (nothing to copy: the adaptive back-off must keep the cost small).

For each task the runs alternate: plain decoding, gemma-chat's lookup speculation, and,
as the anchor, llama-cpp-python's own ``LlamaPromptLookupDecoding`` (a separate ``Llama``
with ``logits_all=True``, as it requires; its generator is stopped at ``<end_of_turn>``
or the same token limit). Each reply starts from an empty KV cache. Decode tokens/s is
measured from the first token to the last; the medians are compared as ratios to plain
decoding, and the acceptance (accepted / drafted tokens) is reported for gemma-chat.

On a busy machine, ``--cpu-time --threads 1`` reads the process's CPU time instead of the
wall clock (first text to last text): other work then delays a reply without adding to
its time. With two threads the CPU time would count the threads spinning while they wait
for each other, which load inflates. One thread is not gemma-chat's default, and its
batches cost more single decodes than two threads' (``bench/batch_rows.py``): a check of
the direction under load, not the target's figure.

Usage: python bench/speculative.py [--model PATH] [--tokens 128] [--rounds 3] [--threads 2]
    [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUOTE = "Repeat the text above exactly, word for word."
SUMMARY = "Summarise the text above in three sentences."
CHAT = "Tell me a story about a lighthouse keeper and a storm."
EDIT = "Rename the variable `known` to `seen` in the code above and show the whole code."
CLOCK = [time.perf_counter]
"""What rates read: the wall clock, or with ``--cpu-time`` the process's CPU time."""


def piped_text() -> str:
    """About 600 tokens of English prose and commands: the README's quick start, frozen
    (as of 2026-12-08) in ``bench/data`` so that editing the README does not change the
    input."""
    return (HERE / "data" / "quick_start.txt").read_text(encoding="utf-8")


def piped_code() -> str:
    """About 700 tokens of Python: gemma-chat's own prompt lookup drafter, frozen (as of
    the three-to-six-token lookup) in ``bench/data``: read from the live source, the
    input would change with every edit of the code it measures, its defaults included."""
    return (HERE / "data" / "prompt_lookup_code.txt").read_text(encoding="utf-8")


def tasks() -> dict[str, str]:
    from gemma_chat.cli.inputs import combine

    text = piped_text()
    return {
        "a_quote": combine(QUOTE, text),
        "a2_edit": combine(EDIT, piped_code()),
        "b_summary": combine(SUMMARY, text),
        "c_chat": CHAT,
    }


def gemma_run(engine, backend, message: str, mode: str) -> dict:
    from gemma_chat.chat.conversation import Conversation

    backend.speculative = mode
    backend.clear_state()
    conversation = Conversation()
    conversation.add_user(message)
    stamps: list[float] = []
    done = engine.reply(conversation, on_text=lambda _: stamps.append(CLOCK[0]()))
    stats = done.stats
    rate = stats.tokens_per_s
    if CLOCK[0] is not time.perf_counter:
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        rate = (stats.completion_tokens - 1) / span if span > 0 else None
    return {
        "tokens_per_s": rate,
        "completion_tokens": stats.completion_tokens,
        "drafted": stats.drafted_tokens,
        "accepted": stats.accepted_tokens,
        "stop": done.stop_reason.value,
        "ids": list(done.token_ids or ()),
    }


def anchor_run(llm, prompt_ids: list[int], max_tokens: int, stop_ids: set[int]) -> dict:
    llm.reset()
    llm._ctx.kv_cache_clear()
    first = last = None
    count = 0
    for token in llm.generate(prompt_ids, top_k=64, top_p=0.95, min_p=0.0, temp=0.0):
        now = CLOCK[0]()
        first = first or now
        last = now
        if token in stop_ids:
            break
        count += 1
        if count >= max_tokens:
            break
    rate = (count - 1) / (last - first) if first and last and last > first else None
    return {"tokens_per_s": rate, "completion_tokens": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--cpu-time", action="store_true", help="rates by CPU time (see above)")
    args = parser.parse_args()
    if args.cpu_time:
        CLOCK[0] = time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GEMMA_CHAT_DATA_DIR"] = tmp  # never the user's own history
        print(json.dumps(run(args)))


def run(args: argparse.Namespace) -> dict:
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine
    from gemma_chat.models.demo import demo_model

    model = Path(args.model) if args.model else demo_model()
    if model is None:
        raise SystemExit("no model: pass --model PATH or install the demo extra")
    load = os.getloadavg()
    backend = LlamaBackend(
        model, n_ctx=args.ctx, offload=OffloadPlan(0, "cpu"), threads=args.threads
    )
    engine = Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=args.tokens))
    anchor = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=args.ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        flash_attn=True,
        logits_all=True,
        draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10),
        verbose=False,
    )
    ids = engine.template.ids if engine.template else None
    stop_ids = {ids.end_of_turn, ids.eos, ids.start_of_turn} if ids else set()
    results: dict[str, dict] = {}
    for name, message in tasks().items():
        conversation = Conversation()
        conversation.add_user(message)
        prompt_ids = list(engine.template.render(conversation.turns, None))
        runs: dict[str, list[dict]] = {"plain": [], "lookup": [], "anchor": []}
        for _ in range(args.rounds):
            runs["plain"].append(gemma_run(engine, backend, message, "off"))
            runs["lookup"].append(gemma_run(engine, backend, message, "lookup"))
            runs["anchor"].append(anchor_run(anchor, prompt_ids, args.tokens, stop_ids))
        med = {k: statistics.median(r["tokens_per_s"] or 0.0 for r in v) for k, v in runs.items()}
        drafted = sum(r["drafted"] for r in runs["lookup"])
        accepted = sum(r["accepted"] for r in runs["lookup"])
        results[name] = {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": {k: [r["completion_tokens"] for r in v] for k, v in runs.items()},
            "tokens_per_s": {k: [r["tokens_per_s"] for r in v] for k, v in runs.items()},
            "median_tokens_per_s": med,
            "ratio_lookup": med["lookup"] / med["plain"],
            "ratio_anchor": med["anchor"] / med["plain"],
            "acceptance": accepted / drafted if drafted else None,
            "drafted": drafted,
            "accepted": accepted,
            "identical_greedy": all(
                r["ids"] == p["ids"] for r, p in zip(runs["lookup"], runs["plain"], strict=True)
            ),
        }
    backend.close()
    anchor.close()
    table(results, file=sys.stderr)
    return {
        "model": model.name,
        "threads": args.threads,
        "clock": "cpu" if CLOCK[0] is not time.perf_counter else "wall",
        "tokens": args.tokens,
        "rounds": args.rounds,
        "load_before": load,
        "load_after": os.getloadavg(),
        "tasks": results,
    }


def table(results: dict[str, dict], file) -> None:
    print(
        "task       plain tok/s  lookup (ratio)   anchor (ratio)   acceptance  identical", file=file
    )
    for name, r in results.items():
        med = r["median_tokens_per_s"]
        acc = f"{r['acceptance']:.0%}" if r["acceptance"] is not None else "-"
        print(
            f"{name:<10} {med['plain']:>10.1f}  {med['lookup']:>6.1f} ({r['ratio_lookup']:.2f}x)"
            f"  {med['anchor']:>6.1f} ({r['ratio_anchor']:.2f}x)  {acc:>10}"
            f"  {r['identical_greedy']}",
            file=file,
        )


if __name__ == "__main__":
    main()
