"""The baseline: a raw llama.cpp decode loop through llama-cpp-python's low-level API.

Greedy sampling, no stop rules, no text decoding: the fastest a Python program can drive
llama.cpp. Prints one JSON object. Used by ``bench/decode.py``; not part of the app.

Usage: python bench/raw_decode.py MODEL PROMPT_IDS_JSON N_TOKENS THREADS N_CTX
"""

from __future__ import annotations

import ctypes
import json
import sys
import time

import llama_cpp


def main() -> None:
    model_path, ids_json, n_tokens, threads, n_ctx = sys.argv[1:6]
    prompt = json.loads(ids_json)
    n_tokens, threads, n_ctx = int(n_tokens), int(threads), int(n_ctx)

    @llama_cpp.llama_log_callback
    def quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        pass

    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(
        model_path.encode(), llama_cpp.llama_model_default_params()
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_threads = threads
    params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())

    start = time.perf_counter()
    array = (llama_cpp.llama_token * len(prompt))(*prompt)
    if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(prompt))) != 0:
        raise SystemExit("prompt decode failed")
    first_at = last_at = None
    one = (llama_cpp.llama_token * 1)()
    for _ in range(n_tokens):
        token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        last_at = time.perf_counter()
        first_at = first_at or last_at
        one[0] = token
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) != 0:
            break
    assert first_at is not None and last_at is not None
    print(
        json.dumps(
            {
                "ttft_s": first_at - start,
                "tokens_per_s": (n_tokens - 1) / (last_at - first_at),
                "completion_tokens": n_tokens,
            }
        )
    )
    llama_cpp.llama_sampler_free(sampler)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
