"""Benchmark: the same benches on two revisions of gemma-chat, side by side in one run.

A change that should not change behaviour (a restructure, a refactor) is checked by
running ``bench/decode.py`` and ``bench/tui_stream.py`` of a baseline revision and of
the working tree in alternation, one round each at a time, on the same machine and
model, and comparing the medians as ratios (working tree / baseline). Each tree runs its
own copy of the bench scripts with ``PYTHONPATH`` pointing at itself, so the scripts may
import modules from different places.

Reported:

* decode: gemma-chat's decode tokens/s against a raw llama.cpp loop (the bench's own
  ratio), for each tree, and the ratio of those ratios;
* KV reuse: tokens evaluated at turn 6 of the six-turn script, and its time to first
  token, for each tree;
* TUI streaming: UI tokens/s, worst frame gap and worst loop lag for each tree.

Usage: python bench/compare_trees.py [--baseline REV] [--rounds 3] [--tokens 5000]

The baseline is checked out with ``git worktree`` into a temporary folder and removed
afterwards. Results go to bench/results/compare_trees.json.
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
TOP = HERE.parent


def run_bench(tree: Path, script: str, args: list[str]) -> dict:
    """Run one tree's bench script once; return the JSON it wrote."""
    with tempfile.TemporaryDirectory() as data:
        # Each run gets an empty history: the two trees may know different store schemas,
        # and a bench never writes into the user's own history.
        env = dict(os.environ, PYTHONPATH=str(tree), GEMMA_CHAT_DATA_DIR=data)
        proc = subprocess.run(
            [sys.executable, str(tree / "bench" / script), *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {script} failed:\n{proc.stderr[-2000:]}")
    result = tree / "bench" / "results" / script.replace(".py", ".json")
    return json.loads(result.read_text())


def decode_figures(result: dict) -> dict:
    """The decode and turn-6 figures of one ``decode.py`` run."""
    turn6 = result["ttft"]["turns"][5]
    return {
        "decode_ratio": result["decode"]["ratio"],
        "ask_tokens_per_s": result["decode"]["ask_median"],
        "turn6_evaluated": turn6["evaluated_tokens"],
        "turn6_ttft_ms": turn6["ttft_s"] * 1000,
    }


def tui_figures(result: dict) -> dict:
    """The streaming figures of one ``tui_stream.py`` run."""
    summary = result["summary"]
    return {
        "ui_tokens_per_s": summary["ui_tokens_per_s"],
        "worst_frame_gap_ms": summary["worst_frame_gap_ms"],
        "worst_loop_lag_ms": summary["worst_loop_lag_ms"],
    }


def medians(runs: list[dict]) -> dict:
    """The median of every figure over the runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=5000, help="TUI reply length")
    parser.add_argument("--decode-rounds", type=int, default=3, help="decode.py --rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gemma-chat-baseline-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(TOP), "worktree", "add", "--detach", str(base), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            trees = {"baseline": base, "working": TOP}
            decode: dict[str, list[dict]] = {name: [] for name in trees}
            tui: dict[str, list[dict]] = {name: [] for name in trees}
            load_before = os.getloadavg()
            for index in range(args.rounds):
                # Alternate which tree goes first, so drift in the machine's load
                # favours neither.
                order = list(trees) if index % 2 == 0 else list(reversed(trees))
                for name in order:
                    tree = trees[name]
                    decode_args = ["--rounds", str(args.decode_rounds)]
                    decode[name].append(decode_figures(run_bench(tree, "decode.py", decode_args)))
                    tui_args = ["--rounds", "1", "--tokens", str(args.tokens)]
                    tui[name].append(tui_figures(run_bench(tree, "tui_stream.py", tui_args)))
                    print(f"round {index + 1}: {name}: {decode[name][-1]} {tui[name][-1]}")
            load_after = os.getloadavg()
        finally:
            subprocess.run(
                ["git", "-C", str(TOP), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )

    summary = {name: {**medians(decode[name]), **medians(tui[name])} for name in trees}
    ratios = {
        key: summary["working"][key] / summary["baseline"][key]
        for key in summary["working"]
        if summary["baseline"][key]
    }
    result = {
        "baseline": args.baseline,
        "rounds": args.rounds,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "summary": summary,
        "ratios_working_over_baseline": ratios,
        "decode": decode,
        "tui": tui,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "compare_trees.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nmedian of {args.rounds} alternating rounds, "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(f"  {'figure':<22} {'baseline':>10} {'working':>10} {'ratio':>7}")
    for key in summary["working"]:
        b, w = summary["baseline"][key], summary["working"][key]
        ratio = f"{w / b:.3f}" if b else "-"
        print(f"  {key:<22} {b:>10.3f} {w:>10.3f} {ratio:>7}")


if __name__ == "__main__":
    main()
