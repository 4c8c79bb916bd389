"""Lossless speculative decoding on a ``llama_cpp.Llama``: draft, verify in one batch, roll back.

A *drafter* guesses the next few tokens (:class:`PromptLookup`: the continuation of the
latest earlier occurrence of the last n-gram, in the prompt or the reply so far; or a
small draft model, :mod:`gemma_chat.backend.draft_model`). The target model then
evaluates the pending token and the draft in ONE ``llama_decode`` batch, with logits for
those rows only, and the target's own sampler chain samples each position in turn. A
drafted token is kept only while it equals what the target sampled there; the first
sample that differs is kept too (it is what plain decoding would have produced), and the
KV cells of the rejected tail are removed. Each position is therefore sampled from
the distribution plain decoding would use, with the same sampler chain: at temperature 0
the output is plain decoding's, and at temperature > 0 the output distribution is
unchanged (only the random stream is consumed differently).

One caveat, measured on the demo model (``bench/batch_rows.py``): llama.cpp's CPU decoding
is not batch-invariant. Which kernels a product uses, and in which order they sum,
depends on how many rows the batch has (llamafile's tiled kernels for two rows or more,
repacked weights, how flash attention splits its work). With the defaults (2 threads,
flash attention on) the first row of a batch gets logits up to about 0.9 away from the
same token decoded alone, whatever the batch's size from 2 to 16. With one thread, flash
attention off or weights not repacked, the gap is 0 for some prefixes and batch sizes
and 0.4-1.1 for others; no setting made it 0 throughout.
Greedy output is therefore identical to plain decoding except where two candidates are
that close, which a re-evaluated prompt (another prefix split of the KV cache) can flip
just the same. Tried and dropped: re-decoding alone every row whose best two logits are
within 1.5. The cache already holds the accepted tokens' keys and values as the batch
computed them, so in one run of the 13 tasks of ``bench/lookup_replay.py`` (128 tokens)
it changed which replies differed from plain decoding, not how many: 9 of 13 were
identical either way. (Other runs of the same tasks, in another order, gave 13 of 13
without it: which near-ties come up depends on the cache's history.)

Tokens are yielded one at a time, so the reply loop applies every stop rule at every
accepted token. When the caller stops iterating, the cache is cut back to what plain
decoding would hold at that point: everything before the last yielded token.

When drafts keep failing (free-form chat), :class:`Pacer` backs off: it drafts less and
less often, so a miss costs at most a few percent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gemma_chat.backend.base import Cancelled

MAX_DRAFT = 15
"""The longest draft verified in one batch (16 rows with the pending token)."""


@dataclass
class SpecStats:
    """What speculation did during one reply.

    Attributes:
        mode: ``lookup`` or ``draft`` (``off``: plain decoding).
        drafted: Tokens proposed by the drafter and verified by the target (those after
            a refused one count as refused; those after the token the reply stopped at
            do not count).
        accepted: Drafted tokens the target agreed with (and that were kept).
        batches: Verification batches run.
    """

    mode: str = "off"
    drafted: int = 0
    accepted: int = 0
    batches: int = 0

    @property
    def acceptance(self) -> float | None:
        """accepted / drafted, or None when nothing was drafted."""
        return self.accepted / self.drafted if self.drafted else None


class Drafter(Protocol):
    """Guesses how the token history continues."""

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens likely to follow ``history`` (may be empty)."""
        ...

    def close(self) -> None:
        """Release what the drafter holds."""
        ...


class PromptLookup:
    """Drafts by n-gram lookup: find the latest earlier occurrence of the history's last
    ``n`` tokens (longest ``n`` first) and propose what followed it.

    The index grows incrementally with the history, so each draft costs a few dict
    look-ups, whatever the prompt's length.

    A match needs three tokens at least, and up to six are tried. ``bench/lookup_replay.py``
    replays the demo model's greedy replies to 13 tasks: a 7-token draft after a two-token
    match ("\n\n", ". The") kept 50-57% of its tokens, barely above the 44% that pays for
    its 8-row batch (and a refused draft also pauses drafting); after three to five tokens
    68-78%, after six or more 90-93%. Longer matches also pick the right earlier occurrence
    when a phrase repeats. Estimated over the 13 tasks, against two to four tokens:
    1.58x plain decoding instead of 1.55x (128-token replies), 1.63x instead of 1.59x (256).
    The gain is the longer matches: two to six tokens estimates the same (1.57x, 1.63x),
    so the minimum of three is neutral there.
    """

    def __init__(self, ngram_max: int = 6, ngram_min: int = 3) -> None:
        self.ngram_max, self.ngram_min = ngram_max, ngram_min
        self._history: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}

    def _sync(self, history: Sequence[int]) -> None:
        known = self._history
        if len(history) < len(known) or known[-1:] != list(history[len(known) - 1 : len(known)]):
            known.clear()  # not an extension: start again
            self._index.clear()
        index, start = self._index, len(known)
        known.extend(history[start:])
        for end in range(max(start, 1), len(known)):
            # The n-grams ending just before ``end`` continue at ``end``.
            for n in range(self.ngram_min, self.ngram_max + 1):
                if end - n >= 0:
                    index[tuple(known[end - n : end])] = end

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        """The continuation of the longest matching earlier n-gram (up to ``k`` tokens)."""
        self._sync(history)
        known = self._history
        for n in range(self.ngram_max, self.ngram_min - 1, -1):
            if len(known) < n:
                continue
            at = self._index.get(tuple(known[-n:]))
            if at is not None:
                return _continue_from(known, at, k)
        return []

    def close(self) -> None:
        """Nothing to release."""


def _continue_from(known: list[int], at: int, k: int) -> list[int]:
    """``k`` tokens of what followed ``known[at]``'s n-gram, read as what follows now.

    When the earlier occurrence is recent (a loop: "A B A B A B"), its continuation runs
    into the present; it goes on with the tokens this draft has just predicted, so a
    loop of any period is drafted in full rather than cut at the history's end.
    """
    drafted: list[int] = []
    for i in range(k):
        source = at + i
        drafted.append(known[source] if source < len(known) else drafted[source - len(known)])
    return drafted


DRAFT_SIZES = (3, 7, 11, 15)
"""The draft lengths verified: with the pending token, batches of 4, 8, 12 or 16 rows.

Measured with ``bench/batch_rows.py`` on the demo model (1 or 2 threads, flash attention
on and off, load 0.3-1.4): a batch of 3 rows costs more than one of 4 (2.7-3.4 against
2.4-2.8 single decodes), one of 8 costs 3.5-4.7 and one of 16 6.2-7.9. A 2-row batch (one
drafted token) costs 1.6-2.0 single decodes: it pays only when its token is kept more
than three times in four. With these costs a draft pays once about half of it is kept."""


def fit_draft(length: int) -> int:
    """The longest draft size of ``DRAFT_SIZES`` that is at most ``length`` (0: none)."""
    return max((size for size in DRAFT_SIZES if size <= length), default=0)


CONFIDENT = 0.5
"""The share of the reply's drafted tokens kept from which its drafts are trusted (see
:class:`Pacer`)."""


class Pacer:
    """Decides how many tokens to draft next, from how the reply's drafts have fared.

    The draft length follows the accepted length (longer after a full acceptance), in
    the sizes of ``DRAFT_SIZES``. A draft that kept less than half of its tokens is a
    miss: verifying it cost about as much as the tokens it saved, or more. After a miss,
    drafting pauses for a number of tokens that doubles with each consecutive miss (up to
    ``max_pause``), so text that the history cannot predict (free-form chat, where drafts
    keep a token or two) runs at plain speed.

    A reply whose drafts have kept at least ``CONFIDENT`` of their tokens so far copies
    from its history (a quote, an edit): there a miss is where the reply departs from
    its source for a word or two, and the source resumes right after. So a miss does not
    pause it (the next draft is the shortest), and a draft kept in full is followed by
    the longest (``bench/lookup_replay.py``, demo model, 128 tokens: quoting a piped text
    is estimated at 1.69x plain decoding this way, 1.45x when every miss pauses and the
    drafts climb back 3, 7, 15). Only the first miss of a run is forgiven: the share is
    the whole reply's, so a reply that quotes and then goes free-form stays trusted for
    dozens of drafts, and forgiving every miss there cost its free-form part 2-9% of plain
    speed in the replay, with no gain on the 13 recorded tasks. ``trust`` sets that share
    (None: never trusted, every miss pauses).
    """

    def __init__(
        self, max_draft: int = MAX_DRAFT, max_pause: int = 64, trust: float | None = CONFIDENT
    ) -> None:
        self.max_draft, self.max_pause, self.trust = fit_draft(max_draft), max_pause, trust
        self.length = min(7, self.max_draft)
        self.drafted = 0
        """Tokens drafted and judged in this reply so far."""
        self.accepted = 0
        """Of those, the tokens kept."""
        self._misses = 0
        self._pause = 0

    @property
    def confident(self) -> bool:
        """Whether the reply's drafts so far kept at least ``trust`` of their tokens."""
        if self.trust is None or self.drafted == 0:
            return False
        return self.accepted >= self.trust * self.drafted

    def want(self) -> int:
        """How many tokens to draft now (0: decode one token plainly)."""
        if self._pause > 0:
            self._pause -= 1
            return 0
        return self.length

    def record(self, drafted: int, accepted: int) -> None:
        """Take the result of one verified draft into account."""
        if drafted == 0:
            return
        self.drafted, self.accepted = self.drafted + drafted, self.accepted + accepted
        if accepted * 2 < drafted:  # most of it wasted: a miss
            self.length = DRAFT_SIZES[0]
            if self.confident and self._misses == 0:
                self._misses = 1  # forgiven; a second miss in a row pauses
            else:
                self._misses += 1
                self._pause = min(self.max_pause, 2**self._misses)
            return
        self._misses = 0
        if accepted == drafted:
            grown = self.max_draft if self.confident else self.length * 2 + 1
            self.length = fit_draft(min(self.max_draft, grown))
        else:  # the next size up from what was kept
            up = [size for size in DRAFT_SIZES if size >= accepted + 1] or [self.max_draft]
            self.length = min(self.max_draft, up[0])


def _decode(llm: Any, tokens: Sequence[int]) -> None:
    """Evaluate ``tokens`` after the cache in one batch, with logits for every row."""
    batch = llm._batch.batch
    n_past = llm.n_tokens
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = n_past + i
        batch.seq_id[i][0] = 0
        batch.n_seq_id[i] = 1
        batch.logits[i] = True
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past : n_past + len(tokens)] = tokens
    llm.n_tokens = n_past + len(tokens)


def _cut(llm: Any, n_tokens: int) -> None:
    """Drop the cache's cells from position ``n_tokens`` on.

    Raises:
        RuntimeError: The cache cannot drop them (a sliding-window cache that is not
            kept full); speculation must not be used then.
    """
    if n_tokens >= llm.n_tokens:
        return
    if not llm._ctx.kv_cache_seq_rm(0, n_tokens, -1):
        raise RuntimeError("llama.cpp cannot roll this KV cache back")
    llm.n_tokens = n_tokens
    llm._requires_eval = True


def speculate(
    llm: Any,
    first: Iterator[int],
    drafter: Drafter,
    stats: SpecStats,
    cancel: threading.Event | None = None,
    max_draft: int = MAX_DRAFT,
    max_tokens: int | None = None,
) -> Iterator[int]:
    """Yield sampled tokens, verifying drafts in batches.

    Args:
        llm: The ``Llama`` whose ``generate`` produced ``first``.
        first: ``llm.generate(prompt, ...)``, not yet started: it evaluates the prompt
            (re-using the cache's prefix), builds the sampler chain and samples the
            first token; it is closed right after.
        drafter: Proposes drafts from the token history.
        stats: Updated as drafts are verified.
        cancel: Checked before every batch.
        max_draft: The longest draft.
        max_tokens: The most tokens the caller takes (the reply's limit), if known: a
            draft never runs past it. (Drafting 15 tokens when 5 remain pays for 11
            rows that cannot be kept.)
    """
    pending = next(first)  # sampled, not yet in the cache
    first.close()
    sampler = llm._sampler
    pacer = Pacer(max_draft)
    n_ctx = llm.n_ctx()
    history = llm.input_ids[: llm.n_tokens].tolist()
    kept = llm.n_tokens  # cells that precede the last yielded token
    unjudged = 0  # drafted tokens after the one the caller may stop at
    yielded = 0
    try:
        yield pending
        yielded += 1
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            room = min(n_ctx - llm.n_tokens - 1, llm.n_batch - 1)
            if room < 0:
                return  # the context is full
            if max_tokens is not None:
                # The batch's last row samples one token more than its draft: with this
                # many drafted, the reply can reach its limit and no row is wasted.
                room = min(room, max_tokens - yielded - 1)
            history.append(pending)
            # Only a size that pays: a draft model would otherwise decode tokens for nothing.
            want = fit_draft(min(pacer.want(), room))
            draft = drafter.draft(history, want) if want > 0 else []
            del draft[fit_draft(len(draft)) :]  # a batch of a size that pays, or none
            _decode(llm, [pending, *draft])
            stats.drafted += len(draft)
            stats.batches += 1 if draft else 0
            base = llm.n_tokens - len(draft) - 1
            accepted = 0
            for i in range(len(draft) + 1):
                token = sampler.sample(llm._ctx, i)
                kept = base + i + 1
                if i < len(draft) and token == draft[i]:
                    accepted += 1
                    stats.accepted += 1  # counted now: the caller may stop at this token
                    history.append(token)
                    # If the reply stops at this token, the rest of the draft was neither
                    # kept nor refused: it is not counted as drafted (see finally).
                    unjudged = len(draft) - i - 1
                    yield token
                    yielded += 1
                    unjudged = 0
                    continue
                pending = token
                break
            pacer.record(len(draft), accepted)
            _cut(llm, base + accepted + 1)
            yield pending
            yielded += 1
    finally:
        stats.drafted -= unjudged
        # Plain decoding holds everything before the last yielded token: so do we.
        if llm.n_tokens > kept:
            _cut(llm, kept)
