"""Is speculative decoding lossless at temperature > 0? A two-sample test on real replies.

Used by ``tests/test_spec_distribution.py`` and ``bench/spec_distribution.py``.

:func:`draw` samples short replies (the first ``k`` tokens) from a ``LlamaBackend``, one
per seed. :func:`compare` tests whether two such samples come from the same distribution:
for each position, the token there (its marginal distribution), and for each length, the
prefix of that length (the joint distribution of the first tokens), it measures the total
variation distance (TVD) between the two samples' empirical distributions, and for each
position also a chi-square statistic (rare tokens pooled into one category). Each
statistic's p-value comes from a permutation test: the replies are shuffled between the
two samples (whole replies, so the dependence between positions is kept) and the
statistic recomputed. The global p-value is that of the smallest per-statistic p-value,
calibrated on the same permutations (Westfall-Young min-p), so testing many positions
does not inflate the false alarms.

:func:`plant` installs a lossy acceptance rule in the real speculation code, to show that
the test rejects one: the test has power only if it says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

STOP = -1
"""What fills a reply's positions after it stopped (``<end_of_turn>`` or ``<eos>``)."""

PLANTS = ("greedy", "top2", "leak")
"""Lossy acceptance rules :func:`plant` can install:

- ``greedy``: keep a drafted token whenever it is the target's most likely token (the
  classic mistake: verifying drafts greedily while sampling the rest);
- ``top2``: keep a drafted token whenever it is among the target's two most likely;
- ``leak``: keep a refused drafted token one time in ten (a subtle leak).
"""


def draw(
    backend,
    prompt: Sequence[int],
    sampling,
    seeds: Sequence[int],
    k: int,
    stop_ids: Sequence[int],
) -> tuple[list[tuple[int, ...]], int, int]:
    """The first ``k`` tokens of one reply per seed, and the drafted and accepted totals.

    Replies that stop earlier are padded with :data:`STOP`. ``backend.speculative`` says
    how they are decoded.
    """
    replies: list[tuple[int, ...]] = []
    drafted = accepted = 0
    for seed in seeds:
        tokens = backend.generate(prompt, sampling, seed)
        reply: list[int] = []
        try:
            for token in tokens:
                if token in stop_ids:
                    break
                reply.append(int(token))
                if len(reply) >= k:
                    break
        finally:
            tokens.close()
        drafted += backend.last_speculation.drafted
        accepted += backend.last_speculation.accepted
        replies.append(tuple(reply + [STOP] * (k - len(reply))))
    return replies, drafted, accepted


@contextmanager
def plant(kind: str, n_vocab: int, leak: float = 0.1, seed: int = 0) -> Iterator[None]:
    """Make ``speculate`` keep drafted tokens by the lossy rule ``kind`` (see ``PLANTS``).

    The real code path runs; only the sampler's answer at drafted rows is overridden: the
    verification batch's draft is recorded as it is decoded, and the sampler, asked for
    row ``i`` of that batch, returns the drafted token when the rule says so (plain
    decoding samples row -1: it is never affected).
    """
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    from gemma_chat.backend import speculative

    if kind not in PLANTS:
        raise ValueError(f"unknown plant {kind!r}")
    draft: list[int] = []
    rng = np.random.default_rng(seed)
    decode, sample = speculative._decode, LlamaSampler.sample

    def recording_decode(llm, tokens):
        draft[:] = list(tokens)[1:]  # after the pending token
        return decode(llm, tokens)

    def lossy_sample(self, ctx, idx: int = -1) -> int:
        token = sample(self, ctx, idx)
        if not 0 <= idx < len(draft) or token == draft[idx]:
            return token
        pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
        if kind == "greedy":
            keep = int(np.argmax(logits)) == draft[idx]
        elif kind == "top2":
            keep = draft[idx] in np.argpartition(logits, -2)[-2:]
        else:
            keep = bool(rng.random() < leak)
        return draft[idx] if keep else token

    speculative._decode = recording_decode
    LlamaSampler.sample = lossy_sample
    try:
        yield
    finally:
        speculative._decode = decode
        LlamaSampler.sample = sample


def _features(replies: Sequence[tuple[int, ...]]) -> list[tuple[str, list[object]]]:
    """(name, value per reply): the token at each position and each prefix of 2+ tokens."""
    k = len(replies[0])
    features: list[tuple[str, list[object]]] = []
    for j in range(k):
        features.append((f"pos{j + 1}", [reply[j] for reply in replies]))
    for j in range(2, k + 1):
        features.append((f"prefix{j}", [reply[:j] for reply in replies]))
    return features


def compare(
    a: Sequence[tuple[int, ...]],
    b: Sequence[tuple[int, ...]],
    permutations: int = 2000,
    seed: int = 0,
    pool_below: int = 5,
) -> dict:
    """Test whether the replies ``a`` and ``b`` come from the same distribution.

    Every feature (a position's token, a prefix) has its categories seen fewer than
    ``pool_below`` times in both samples together pooled into one (rare tokens would
    otherwise make the TVD mostly noise), then two statistics: TVD and chi-square. Each
    is standardised by its mean and deviation over the permutations; the global statistic
    is the largest standardised one (a max-T test: testing many features does not inflate
    false alarms), and its p-value is the share of permutations, the observed order
    included, that reach it (at least ``1 / (permutations + 1)``).

    Returns a dict: ``global_p``, ``smallest`` (the statistic with the smallest p-value)
    and, for each statistic, its observed value and own permutation p-value (``stats``).
    """
    n_a, rows = len(a), [*a, *b]
    names: list[str] = []
    columns: list[np.ndarray] = []  # category codes per feature, offset to be disjoint
    spans: list[tuple[int, int]] = []
    offset = 0
    for name, values in _features(rows):
        codes = _pool(_codes(values), pool_below)
        size = int(codes.max()) + 1
        names += [f"{name}.tvd", f"{name}.chi2"]
        columns.append(codes + offset)
        spans.append((offset, offset + size))
        offset += size
    codes = np.stack(columns, axis=1)  # rows x features
    total = np.bincount(codes.ravel(), minlength=offset).astype(float)
    rng = np.random.default_rng(seed)
    orders = [np.arange(len(rows))] + [rng.permutation(len(rows)) for _ in range(permutations)]
    values = np.empty((len(orders), len(names)))
    for p, order in enumerate(orders):
        in_a = np.bincount(codes[order[:n_a]].ravel(), minlength=offset).astype(float)
        values[p] = _statistics(in_a, total, n_a, len(rows) - n_a, spans)
    # Each statistic's own p-value: the share of orders whose value is at least as large.
    pvalues = (values >= values[0]).mean(axis=0)
    spread = values[1:].std(axis=0)
    z = (values - values[1:].mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    top = z.max(axis=1)
    tvd = [s for s, name in enumerate(names) if name.endswith(".tvd")]
    return {
        "n": [n_a, len(rows) - n_a],
        "permutations": permutations,
        "global_p": round(float(np.mean(top >= top[0])), 5),
        "max_z": round(float(top[0]), 2),
        "smallest": names[int(np.argmax(z[0]))],
        "max_tvd": round(float(values[0, tvd].max()), 4),
        "stats": {
            name: {"value": round(float(values[0, s]), 4), "p": round(float(pvalues[s]), 4)}
            for s, name in enumerate(names)
        },
    }


def _codes(values: Sequence[object]) -> np.ndarray:
    index: dict[object, int] = {}
    return np.array([index.setdefault(value, len(index)) for value in values], dtype=np.int64)


def _pool(codes: np.ndarray, below: int) -> np.ndarray:
    """Categories seen fewer than ``below`` times in both samples together become one."""
    counts = np.bincount(codes)
    kept = np.flatnonzero(counts >= below)
    mapping = np.full(len(counts), len(kept), dtype=np.int64)  # the pooled category last
    mapping[kept] = np.arange(len(kept))
    return mapping[codes]


def _statistics(in_a, total, n_a: int, n_b: int, spans) -> list[float]:
    """TVD and chi-square of each feature, from the first sample's counts."""
    out = []
    for start, end in spans:
        count_a, seen = in_a[start:end], total[start:end]
        count_b = seen - count_a
        out.append(0.5 * float(np.abs(count_a / n_a - count_b / n_b).sum()))
        expected_a, expected_b = seen * n_a / (n_a + n_b), seen * n_b / (n_a + n_b)
        chi2 = (count_a - expected_a) ** 2 / expected_a + (count_b - expected_b) ** 2 / expected_b
        out.append(float(chi2.sum()))
    return out
