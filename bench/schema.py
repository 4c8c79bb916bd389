"""Benchmark: decode speed with a JSON Schema against without, on the same model.

One process loads the model once and alternates, round by round, three replies to the
same question:

1. ``plain``: no constraint;
2. ``schema``: ``Engine(constraint=...)``, gemma-chat's path (sample, check the token
   against the grammar, resample under it only when refused, from the best tokens when
   that is exact; see backend/grammar.py);
3. ``naive``: the same grammar in llama-cpp-python's sampling chain
   (``Llama.generate(grammar=...)``), which checks the whole vocabulary every token: the
   cost gemma-chat's path avoids, for reference.

Each reply is greedy, the repetition guard off, and runs to ``--tokens`` (the schema is
one string field of at least 2000 characters, so the grammar stays open). Decode
tokens/s after the first token; the medians are compared: ratio = schema / plain
(target >= 0.8). Also reported: how many tokens per reply the grammar refused, and how
many of those needed a full-vocabulary pass (the shortlist fell short).

Usage: python bench/schema.py [--model PATH] [--tokens 128] [--rounds 5] [--threads N]

Results go to bench/results/schema.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTION = "Tell me a long story about a cat, as JSON with one field, story."
SCHEMA = {
    "type": "object",
    # minLength keeps the string, and so the grammar, open for the whole run.
    "properties": {"story": {"type": "string", "minLength": 2000}},
    "required": ["story"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", type=int, default=1024)
    args = parser.parse_args()

    from llama_cpp.llama_grammar import LlamaGrammar

    from gemma_chat.backend import grammar as grammar_module
    from gemma_chat.backend.grammar import gbnf_for
    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import RepeatGuard, Sampling
    from gemma_chat.generation.engine import Engine
    from gemma_chat.structured.constraint import parse_schema

    if args.model is None:
        from gemma_chat.models.demo import demo_model

        demo = demo_model()
        if demo is None:
            raise SystemExit("no --model and the demo extra is not installed")
        args.model = str(demo)
    backend = LlamaBackend(
        Path(args.model), n_ctx=args.ctx, offload=OffloadPlan(0, "cpu"), threads=args.threads
    )
    sampling = Sampling(temperature=0.0, seed=1, max_tokens=args.tokens)
    guard = RepeatGuard(enabled=False)
    constraint = parse_schema(json.dumps(SCHEMA))
    plain_engine = Engine(backend, sampling, guard)
    schema_engine = Engine(backend, sampling, guard, constraint)
    conversation = Conversation()
    conversation.add_user(QUESTION)
    prompt_ids = plain_engine.template.render_conversation(conversation)

    def engine_rate(engine: Engine) -> tuple[float, int]:
        done = engine.reply(Conversation(turns=list(conversation.turns)))
        if done.stats.completion_tokens < args.tokens // 2:
            print(f"  note: a reply stopped early ({done.stop_reason.value})")
        return done.stats.tokens_per_s or 0.0, done.stats.completion_tokens

    def naive_rate() -> tuple[float, int]:
        grammar = LlamaGrammar.from_string(gbnf_for(constraint), verbose=False)
        llm = backend.llama
        count, first = 0, None
        for _ in llm.generate(prompt_ids, temp=0.0, grammar=grammar):
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count >= args.tokens:
                break
        assert first is not None
        return (count - 1) / (time.perf_counter() - first), count

    # How many tokens the grammar refused, and how many of those took a full pass.
    refused: list[int] = []
    full_passes: list[int] = []
    close = grammar_module.GrammarSampler.close

    def counting_close(self: grammar_module.GrammarSampler) -> None:
        refused.append(self.resampled)
        full_passes.append(self.full_passes)
        close(self)

    grammar_module.GrammarSampler.close = counting_close  # type: ignore[method-assign]

    rates: dict[str, list[float]] = {"plain": [], "schema": [], "naive": []}
    for number in range(1, args.rounds + 1):
        for name, run in (
            ("plain", lambda: engine_rate(plain_engine)),
            ("schema", lambda: engine_rate(schema_engine)),
            ("naive", naive_rate),
        ):
            rate, tokens = run()
            rates[name].append(rate)
            print(f"round {number} {name:6}: {rate:6.1f} tok/s ({tokens} tokens)", flush=True)
    backend.close()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "model": Path(args.model).name,
        "threads": args.threads,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "tokens_per_s": rates,
        "medians": medians,
        "ratio_schema_plain": medians["schema"] / medians["plain"],
        "ratio_naive_plain": medians["naive"] / medians["plain"],
        "refused_tokens_per_reply": refused,
        "full_passes_per_reply": full_passes,
        "load_average": os.getloadavg(),
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "schema.json").write_text(json.dumps(result, indent=2))
    print(f"model {result['model']}, {args.threads} threads, {args.tokens} tokens per reply")
    print(
        f"decode: plain {medians['plain']:.1f} tok/s, schema {medians['schema']:.1f} tok/s, "
        f"ratio {result['ratio_schema_plain']:.3f} (target >= 0.8; median of {args.rounds})"
    )
    print(f"tokens the grammar refused, per reply: {refused}; full passes: {full_passes}")
    print(f"load average at the end: {os.getloadavg()}")
    print(
        f"naive grammar in the sampling chain: {medians['naive']:.1f} tok/s, ratio "
        f"{result['ratio_naive_plain']:.3f}"
    )


if __name__ == "__main__":
    main()
