"""What a verification batch costs, and why its logits differ from plain decoding.

Speculative decoding evaluates the pending token and a draft in one batch of k rows, with
logits for every row. Two properties of llama.cpp decide what that buys:

1. **Cost.** For k = 1..16 rows after a 500-token prefix: the time of one decode with
   logits for every row, against a single-token decode (alternating, medians). A draft
   pays only when the tokens it keeps outweigh the rows' cost.
2. **Batch invariance.** For the same tokens after the same prefix: the largest logit
   difference between row 0 of a k-row batch and the same token decoded alone, and
   between row 0 of a k-row batch and of a 2-row batch. On the demo model's Q5_0/Q8_0
   weights llama.cpp multiplies one row with its vector kernels and several rows with
   llamafile's tiled kernels, which sum in another order; greedy decoding then flips
   where two candidates are nearly tied, which is why a speculative reply is not always
   token-identical to plain decoding.

Both with llama.cpp's repacked weights (its default) and without (``use_extra_bufts``
off): the two are loaded side by side and timed in alternation (each batch size, and a
500-token prompt evaluation, on one and then the other, which goes first alternating by
round), so that on a shared machine a burst of load falls on both alike.
Flash attention is on, as gemma-chat runs it, unless ``--no-flash-attn``: the
row-0 differences depend on it and on the thread count (with one thread, or with flash
attention off and weights not repacked, row 0 equals the token decoded alone), so
compare runs that vary ``--threads`` and ``--no-flash-attn`` before naming a cause.
Prints JSON; writes ``bench/results/batch_rows.json``.

Usage: python bench/batch_rows.py [--model PATH] [--threads 2] [--rounds 5] [--no-flash-attn]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

import llama_cpp as L
import numpy as np

HERE = Path(__file__).resolve().parent
ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16)
PREFIX = 500
CLOCK = [time.perf_counter]
"""What timings read: the wall clock, or with ``--cpu-time`` the process's CPU time."""


@L.llama_log_callback
def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass


class Probe:
    """One model and one context, decoding batches after a fixed prefix."""

    def __init__(self, path: str, threads: int, repack: bool, flash_attn: bool = True) -> None:
        params = L.llama_model_default_params()
        params.use_extra_bufts = repack
        self.model = L.llama_model_load_from_file(path.encode(), params)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        ctx_params = L.llama_context_default_params()
        ctx_params.n_ctx, ctx_params.n_batch, ctx_params.n_ubatch = 2048, 512, 512
        ctx_params.n_threads = ctx_params.n_threads_batch = threads
        ctx_params.swa_full = True  # as gemma-chat configures it
        ctx_params.flash_attn_type = 1 if flash_attn else 0  # on: as gemma-chat runs it
        self.ctx = L.llama_init_from_model(self.model, ctx_params)
        self.memory = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(512, 0, 1)
        self.prefix = [1000 + (i * 7919) % 20000 for i in range(PREFIX)]
        self.decode(self.prefix, 0, logits=False)

    def decode(self, tokens: list[int], start: int, logits: bool = True) -> list[np.ndarray]:
        batch = self.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i] = token, start + i
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
            batch.logits[i] = logits or i == len(tokens) - 1
        if L.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        if not logits:
            return []
        return [
            np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), (self.n_vocab,)).copy()
            for i in range(len(tokens))
        ]

    def rows_after_prefix(self, tokens: list[int]) -> list[np.ndarray]:
        """Logits of ``tokens`` decoded in one batch after the prefix; the cache is then
        cut back to the prefix."""
        rows = self.decode(tokens, PREFIX)
        L.llama_memory_seq_rm(self.memory, 0, PREFIX, -1)
        return rows

    def prompt_eval(self) -> float:
        """Seconds to evaluate the prefix as a prompt, from an empty cache (it is then
        the cache's prefix again)."""
        L.llama_memory_seq_rm(self.memory, 0, 0, -1)
        start = CLOCK[0]()
        self.decode(self.prefix, 0, logits=False)
        return CLOCK[0]() - start

    def close(self) -> None:
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)


def measure(path: str, threads: int, rounds: int, flash_attn: bool) -> dict[str, dict]:
    """Both weight layouts, loaded side by side and timed in alternation: every round
    times each batch size and a prompt evaluation on one layout and then the other
    (which goes first alternates by round), so load that comes and goes on a shared
    machine falls on both alike."""
    probes = {
        "repacked": Probe(path, threads, True, flash_attn),
        "not_repacked": Probe(path, threads, False, flash_attn),
    }
    draft = [2000 + i for i in range(max(ROWS))]
    try:
        times = {name: {k: [] for k in ROWS} for name in probes}
        prompt = {name: [] for name in probes}
        for r in range(rounds):
            order = list(probes) if r % 2 == 0 else list(reversed(probes))
            for k in ROWS:
                for name in order:
                    start = CLOCK[0]()
                    probes[name].rows_after_prefix(draft[:k])
                    times[name][k].append(CLOCK[0]() - start)
            for name in order:
                prompt[name].append(probes[name].prompt_eval())
        report = {}
        for name, probe in probes.items():
            single = statistics.median(times[name][1])
            cost = {}
            for k, t in times[name].items():
                cost[k] = {"ms": round(statistics.median(t) * 1000, 1)}
                cost[k]["x_single"] = round(statistics.median(t) / single, 2)
            alone = probe.rows_after_prefix(draft[:1])[0]
            two = probe.rows_after_prefix(draft[:2])[0]
            invariance = {}
            for k in ROWS:
                row0 = probe.rows_after_prefix(draft[:k])[0]
                invariance[k] = {
                    "max_diff_vs_alone": float(np.max(np.abs(row0 - alone))),
                    "max_diff_vs_2_rows": float(np.max(np.abs(row0 - two))),
                }
            report[name] = {
                "cost": cost,
                "prompt_tokens_per_s": round(PREFIX / statistics.median(prompt[name]), 1),
                "row0_logits": invariance,
            }
        return report
    finally:
        for probe in probes.values():
            probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by the process's CPU time, not the wall clock (on a busy machine, with "
        "--threads 1: other work then delays a batch without adding to its time)",
    )
    args = parser.parse_args()
    if args.cpu_time:
        CLOCK[0] = time.process_time
    if args.model is None:
        from gemma_chat.models.demo import demo_model

        args.model = str(demo_model())
    L.llama_log_set(_quiet, ctypes.c_void_p(0))
    L.llama_backend_init()
    report = {
        "model": Path(args.model).name,
        "threads": args.threads,
        "rounds": args.rounds,
        "flash_attn": args.flash_attn,
        "clock": "cpu" if args.cpu_time else "wall",
        "load_before": list(os.getloadavg()),
        **measure(args.model, args.threads, args.rounds, args.flash_attn),
        "load_after": list(os.getloadavg()),
    }
    busy = report["load_before"][0]  # after the run it includes the bench's own threads
    if busy > (os.cpu_count() or 1) - args.threads + 0.5:
        # Other work was sharing the cores: the costs are skewed.
        print(f"warning: load average {busy:.1f} before the run; re-run idle", file=sys.stderr)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "batch_rows.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    for name in ("repacked", "not_repacked"):
        print(f"\n{name}: prompt {report[name]['prompt_tokens_per_s']} tokens/s ({PREFIX} tokens)")
        print(f"{name}: rows  ms  x_single  row0 max|diff| vs alone  vs 2 rows")
        for k in ROWS:
            c, d = report[name]["cost"][k], report[name]["row0_logits"][k]
            print(
                f"  {k:3d} {c['ms']:7.1f} {c['x_single']:5.2f}"
                f"  {d['max_diff_vs_alone']:.4f}  {d['max_diff_vs_2_rows']:.4f}"
            )


if __name__ == "__main__":
    main()
