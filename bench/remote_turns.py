"""Benchmark: the 6-turn script of ``bench/decode.py``, locally against llama-server.

Three paths side by side in one run, on the same model, threads and context, greedy:

* ``local``: llama.cpp in this process (the baseline);
* ``server-ids``: llama.cpp's own llama-server through its native ``/completion``, the
  prompt sent as token ids and the reply ended by token id (what gemma-chat uses when
  the server is llama-server);
* ``server-text``: the same server through the OpenAI text path (stop strings and the
  ``<start_of_turn>`` ban; what gemma-chat used before).

Each round runs the whole script on each path in turn (alternating), and the per-turn
TTFT medians and evaluated tokens are reported. "new" is the tokens turn N adds to what
the server's cache holds after turn N-1 (the previous prompt and the reply): the target
is turn 6 evaluating at most new + 2 through llama-server.

Then the runaway tiny Gemma 2 models (``tests/tinygemma.py``) at temperature 1, 20 seeds
each: how many server replies are exactly the local text and stop reason, by id and by
text.

The server is started here (``--swa-full``, one slot; the binary from
``GEMMA_CHAT_LLAMA_SERVER``, ``--server``, or ``.ci/llama_server.sh``'s cache), and the
run uses an empty temporary data directory.

Usage: python bench/remote_turns.py [--model PATH] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

TURNS = [
    "Tell me a story about a cat.",
    "Now one about a dog.",
    "Which of the two is braver?",
    "Describe the cat in one sentence.",
    "Give the dog a name.",
    "Summarise both stories in two lines.",
]
PATHS = ("local", "server-ids", "server-text")


def run_script(engine, system: str) -> list[dict]:
    from gemma_chat.chat.conversation import Conversation

    conversation = Conversation(system=system)
    turns = []
    for question in TURNS:
        conversation.add_user(question)
        done = engine.reply(conversation)
        turns.append(
            {
                "prompt_tokens": done.stats.prompt_tokens,
                "evaluated_tokens": done.stats.evaluated_tokens,
                "completion_tokens": done.stats.completion_tokens,
                "ttft_s": done.stats.ttft_s,
                "stop_reason": done.stop_reason.value,
                "estimated": done.stats.estimated,
            }
        )
    return turns


def turns_bench(binary: Path, model: str, threads: int, n_ctx: int, rounds: int, tokens: int):
    import llama_server

    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.backend.remote import OpenAIBackend
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    sampling = Sampling(temperature=0.0, seed=1, max_tokens=tokens)
    workdir = Path(tempfile.mkdtemp())
    server = llama_server.start(binary, Path(model), workdir, n_ctx=n_ctx)
    local = LlamaBackend(Path(model), n_ctx=n_ctx, offload=OffloadPlan(0, "cpu"), threads=threads)
    remote_ids = OpenAIBackend.connect(server.base_url, n_ctx=n_ctx)
    remote_text = OpenAIBackend.connect(server.base_url, n_ctx=n_ctx, token_ids=False)
    assert remote_ids.llama_server is not None and remote_text.llama_server is None
    engines = {
        "local": Engine(local, sampling),
        "server-ids": Engine(remote_ids, sampling),
        "server-text": Engine(remote_text, sampling),
    }
    runs: dict[str, list[list[dict]]] = {path: [] for path in PATHS}
    try:
        for _ in range(rounds):
            for path in PATHS:  # alternating: one whole script per path per round
                runs[path].append(run_script(engines[path], "You are a storyteller."))
    finally:
        remote_ids.close()
        remote_text.close()
        local.close()
        llama_server.stop(server)
    return runs


def summarise(runs: list[list[dict]]) -> list[dict]:
    turns = []
    for index in range(len(TURNS)):
        at = [run[index] for run in runs]
        last = at[-1]
        previous = runs[-1][index - 1] if index else None
        new = (
            last["prompt_tokens"] - previous["prompt_tokens"] - previous["completion_tokens"]
            if previous
            else last["prompt_tokens"]
        )
        turns.append(
            {
                "prompt_tokens": last["prompt_tokens"],
                "new_tokens": new,
                "evaluated_tokens": [t["evaluated_tokens"] for t in at],
                "estimated": any(t.get("estimated") for t in at),
                "ttft_ms_median": statistics.median(t["ttft_s"] * 1000 for t in at),
            }
        )
    return turns


def runaway_bench(binary: Path, seeds: int) -> dict:
    import llama_server
    import stories
    from tinygemma import build_tiny_gemma2

    from gemma_chat.backend.local import LlamaBackend
    from gemma_chat.backend.offload import OffloadPlan
    from gemma_chat.backend.remote import OpenAIBackend
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import Sampling
    from gemma_chat.generation.engine import Engine

    scripts = {
        "runaway": stories.RUNAWAY,
        "marker": stories.MARKER_AS_TEXT,
        "new_turn": stories.NEW_TURN,
    }
    workdir = Path(tempfile.mkdtemp())
    result = {}
    for name, script in scripts.items():
        path = build_tiny_gemma2(workdir / f"{name}.gguf", script).path
        server = llama_server.start(binary, path, workdir)
        local = LlamaBackend(path, n_ctx=512, offload=OffloadPlan(0, "cpu"), architecture="gemma2")
        by_id = OpenAIBackend.connect(server.base_url, n_ctx=512)
        by_text = OpenAIBackend.connect(server.base_url, n_ctx=512, token_ids=False)
        same = {"server-ids": 0, "server-text": 0}
        try:
            for seed in range(seeds):
                sampling = Sampling(temperature=1.0, seed=seed, max_tokens=32)
                replies = {}
                for key, backend in (
                    ("local", local),
                    ("server-ids", by_id),
                    ("server-text", by_text),
                ):
                    conversation = Conversation()
                    conversation.add_user("Tell me a story")
                    done = Engine(backend, sampling).reply(conversation)
                    replies[key] = (done.text, done.stop_reason.value)
                for key in same:
                    same[key] += replies[key] == replies["local"]
        finally:
            by_id.close()
            by_text.close()
            local.close()
            llama_server.stop(server)
        result[name] = {**same, "runs": seeds}
    return result


def find_binary(named: str | None) -> Path:
    import llama_server

    path = named or os.environ.get(llama_server.ENV)
    binary = Path(path) if path else llama_server.cached_binary()
    if binary is None or not binary.is_file():
        raise SystemExit("no llama-server binary: run `bash .ci/llama_server.sh` or pass --server")
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the demo model)")
    parser.add_argument("--server", help="the llama-server binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--turn-tokens", type=int, default=64, help="max tokens per turn")
    parser.add_argument("--seeds", type=int, default=20, help="runaway runs per model")
    args = parser.parse_args()
    os.environ["GEMMA_CHAT_DATA_DIR"] = tempfile.mkdtemp()  # never the user's history
    binary = find_binary(args.server)
    if args.model is None:
        from gemma_chat.models.demo import demo_model

        demo = demo_model()
        if demo is None:
            raise SystemExit("no --model and the demo extra is not installed")
        args.model = str(demo)

    runs = turns_bench(binary, args.model, args.threads, args.ctx, args.rounds, args.turn_tokens)
    turns = {path: summarise(runs[path]) for path in PATHS}
    runaways = runaway_bench(binary, args.seeds)
    load = os.getloadavg()
    result = {"model": Path(args.model).name, "load": load, "turns": turns, "runaway": runaways}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "remote_turns.json").write_text(json.dumps(result, indent=2))

    print(f"model {result['model']}, {args.threads} threads, ctx {args.ctx}, {args.rounds} rounds")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("turn | prompt | new | evaluated local / ids / text | TTFT ms local / ids / text")
    for index in range(len(TURNS)):
        row = {path: turns[path][index] for path in PATHS}
        evaluated = " / ".join(
            ("~" if row[p]["estimated"] else "") + str(row[p]["evaluated_tokens"][-1])
            for p in PATHS
        )
        ttft = " / ".join(f"{row[p]['ttft_ms_median']:.1f}" for p in PATHS)
        ids = row["server-ids"]
        print(f"{index + 1} | {ids['prompt_tokens']} | {ids['new_tokens']} | {evaluated} | {ttft}")
    six = turns["server-ids"][5]
    verdict = "yes" if max(six["evaluated_tokens"]) <= six["new_tokens"] + 2 else "NO"
    print(f"turn 6 through llama-server evaluates <= new + 2: {verdict}")
    for name, counts in runaways.items():
        print(
            f"runaway {name}, temperature 1: identical to local {counts['server-ids']}/"
            f"{counts['runs']} by id, {counts['server-text']}/{counts['runs']} by text"
        )


if __name__ == "__main__":
    main()
