"""Benchmark: time to first token when resuming a long conversation, with and without
the KV state cache.

A conversation of about ``--tokens`` tokens (scripted user and model turns of known
text, rendered with the Gemma template) is evaluated once and saved through
``KVStateCache``. Then, alternating for ``--rounds`` rounds, the time to the first token
of the next reply is measured from an empty KV cache, as a freshly started process has:

* without the cache: the whole prompt is evaluated;
* with the cache: the saved state is restored (timed too), then only the new turn is
  evaluated.

The ratio of the medians (without / with) is what the README reports. The state file is
read from the OS page cache here; from a cold disk add its size over the disk's speed.

Usage: python bench/resume.py [--model PATH] [--tokens 3000] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.generation.engine import Engine

HERE = Path(__file__).resolve().parent
NEXT_QUESTION = "Thank you. Which of these places should we visit first, and why?"
TOPICS = [
    "the old harbour", "the botanical garden", "the castle on the hill", "the night market",
    "the river walk", "the science museum", "the cathedral", "the lighthouse",
    "the railway museum", "the city library", "the sculpture park", "the fish market",
]  # fmt: skip


def user_text(index: int) -> str:
    topic = TOPICS[index % len(TOPICS)]
    return (
        f"We are spending a long weekend in the city with two children. Tell me about "
        f"{topic}: how to get there from the central station, what it costs, how long a "
        f"visit takes, and whether it is worth it on a rainy day. Question {index + 1}."
    )


def model_text(index: int) -> str:
    topic = TOPICS[index % len(TOPICS)]
    return (
        f"{topic.capitalize()} is about twenty minutes from the central station by tram; "
        "take line 4 and get off at the third stop after the bridge. Tickets for a family "
        "cost less than a lunch, and children under six go in free. Plan on two hours, "
        "more if the children like to linger. On a rainy day it is still a good choice: "
        "most of it is indoors, there is a cafe with a view, and the queues are shorter. "
        "Go early in the morning, and bring a snack for the tram ride back."
    )


def build_conversation(engine: Engine, target: int) -> Conversation:
    from gemma_chat.chat.conversation import Conversation, StopReason

    conversation = Conversation(system="You are a friendly and practical travel guide.")
    index = 0
    while engine.count_tokens(conversation) < target:
        conversation.add_user(user_text(index))
        conversation.add_model(model_text(index), StopReason.END_OF_TURN)
        index += 1
    return conversation


def first_token(engine: Engine, conversation: Conversation) -> tuple[float, int]:
    """Seconds to the first token of the reply to NEXT_QUESTION, and tokens evaluated."""
    following = copy.deepcopy(conversation)
    following.add_user(NEXT_QUESTION)
    done = engine.reply(following)
    assert done.stats.ttft_s is not None
    return done.stats.ttft_s, done.stats.evaluated_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=3000, help="conversation length")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()
    if args.model is None:
        from gemma_chat.models.demo import demo_model

        demo = demo_model()
        if demo is None:
            raise SystemExit("no --model and the demo extra is not installed")
        args.model = str(demo)

    from gemma_chat.backend.kv_cache import MB, KVStateCache, resume_ids
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.config.settings import KVCacheSettings, Sampling
    from gemma_chat.generation.engine import Engine

    backend = LlamaBackend(
        Path(args.model), n_ctx=args.ctx, offload=OffloadPlan(0, "cpu"), threads=args.threads
    )
    engine = Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=1))
    conversation = build_conversation(engine, args.tokens)
    ids = resume_ids(engine.template, conversation)

    # Evaluate the conversation once (the sampled token is not kept) and save it.
    tokens = backend.generate(ids, engine.sampling, 1)
    next(tokens)
    tokens.close()
    with tempfile.TemporaryDirectory() as tmp:
        cache = KVStateCache(KVCacheSettings(max_mb=1 << 20, min_tokens=256), Path(tmp))
        start = time.perf_counter()
        if not cache.save(backend, "bench", "bench-model", ids):
            raise SystemExit(f"the state was not saved: {cache.last_reason}")
        save_s = time.perf_counter() - start
        state_bytes = cache.total_bytes()

        cold, warm, restore = [], [], []
        evaluated = {"without": 0, "with": 0}
        for _ in range(args.rounds):
            backend.clear_state()
            ttft, evaluated["without"] = first_token(engine, conversation)
            cold.append(ttft)

            backend.clear_state()
            start = time.perf_counter()
            restored = cache.restore(backend, "bench", "bench-model", ids)
            restore_s = time.perf_counter() - start
            if restored == 0:
                raise SystemExit(f"the state was not restored: {cache.last_reason}")
            ttft, evaluated["with"] = first_token(engine, conversation)
            restore.append(restore_s)
            warm.append(restore_s + ttft)
    backend.close()

    result = {
        "model": Path(args.model).name,
        "threads": args.threads,
        "ctx": args.ctx,
        "conversation_tokens": len(ids),
        "turns": len(conversation.turns),
        "state_mb": state_bytes / MB,
        "save_s": save_s,
        "ttft_without_s": cold,
        "ttft_with_s": warm,
        "restore_s": restore,
        "evaluated_without": evaluated["without"],
        "evaluated_with": evaluated["with"],
        "median_without_s": statistics.median(cold),
        "median_with_s": statistics.median(warm),
        "ratio": statistics.median(cold) / statistics.median(warm),
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "resume.json").write_text(json.dumps(result, indent=2))

    print(f"model {result['model']}, {args.threads} threads, ctx {args.ctx}")
    print(
        f"conversation: {len(ids)} tokens in {len(conversation.turns)} turns; "
        f"state file {result['state_mb']:.1f} MB, saved in {save_s * 1000:.0f} ms"
    )
    print(f"{'':16}{'TTFT median':>12}{'min':>10}{'max':>10}{'evaluated':>11}")
    for name, times in (("without cache", cold), ("with cache", warm)):
        key = "without" if name == "without cache" else "with"
        print(
            f"{name:16}{statistics.median(times) * 1000:>9.0f} ms{min(times) * 1000:>7.0f} ms"
            f"{max(times) * 1000:>7.0f} ms{evaluated[key]:>11}"
        )
    print(f"restore alone: median {statistics.median(restore) * 1000:.0f} ms")
    print(f"ratio (without / with, medians of {args.rounds}): {result['ratio']:.1f}x")


if __name__ == "__main__":
    main()
