"""What ``speculate`` counts, on a fake ``Llama`` whose every answer is known.

The fake model's next token at position p is always ``truth(p)``; a drafter proposes that
continuation with chosen mistakes. So each batch's kept and refused tokens are known, and
the statistics can be checked exactly (the real-model tests cannot know them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import numpy as np

from gemma_chat.backend.speculative import SpecStats, speculate

PROMPT = 5


def truth(position: int) -> int:
    return 100 + position


class FakeContext:
    def __init__(self, llm: FakeLlama) -> None:
        self.llm = llm

    def decode(self, batch: SimpleNamespace) -> None:
        b = batch.batch
        self.llm.rows = [b.pos[i] for i in range(b.n_tokens)]

    def kv_cache_seq_rm(self, seq: int, start: int, end: int) -> bool:
        return True


class FakeSampler:
    def sample(self, ctx: FakeContext, row: int) -> int:
        return truth(ctx.llm.rows[row] + 1)  # what follows the row's token


class FakeLlama:
    def __init__(self) -> None:
        size = 64
        self._batch = SimpleNamespace(
            batch=SimpleNamespace(
                n_tokens=0,
                token=[0] * size,
                pos=[0] * size,
                seq_id=[[0] for _ in range(size)],
                n_seq_id=[0] * size,
                logits=[False] * size,
            )
        )
        self._ctx = FakeContext(self)
        self._sampler = FakeSampler()
        self.input_ids = np.zeros(4096, dtype=np.intc)
        self.input_ids[:PROMPT] = [truth(p) for p in range(PROMPT)]
        self.n_tokens = PROMPT
        self.n_batch = 512
        self.rows: list[int] = []

    def n_ctx(self) -> int:
        return 4096


class ScriptedDrafter:
    """Drafts the true continuation, with a wrong token at each index of ``wrong_at``."""

    def __init__(self, wrong_at: set[int]) -> None:
        self.wrong_at = wrong_at

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        start = len(history)
        return [0 if j in self.wrong_at else truth(start + j) for j in range(k)]

    def close(self) -> None:
        pass


def first_token() -> Iterator[int]:
    yield truth(PROMPT)


def take(wrong_at: set[int], n: int) -> tuple[list[int], SpecStats]:
    stats = SpecStats(mode="lookup")
    tokens = speculate(FakeLlama(), first_token(), ScriptedDrafter(wrong_at), stats)
    taken = [next(tokens) for _ in range(n)]
    tokens.close()
    return taken, stats


def test_refused_drafts_count_as_drafted_and_the_reply_is_the_model_s() -> None:
    # Each 7-token draft is wrong at its third token: 2 kept, the third refused (the
    # model's own token is kept instead), the 4 after it discarded with it.
    taken, stats = take({2}, 4)
    assert taken == [truth(PROMPT + i) for i in range(4)]
    assert (stats.batches, stats.drafted, stats.accepted) == (1, 7, 2)


def test_a_draft_cut_by_the_end_of_the_reply_counts_only_what_was_reached() -> None:
    # A right draft of 7, and the reply stops at its third token: the 4 after it were
    # neither kept nor refused.
    taken, stats = take(set(), 4)
    assert taken == [truth(PROMPT + i) for i in range(4)]
    assert (stats.batches, stats.drafted, stats.accepted) == (1, 3, 3)
    assert stats.acceptance == 1.0
    # Reading on through the whole draft and its bonus token: all 7 were judged.
    taken, stats = take(set(), 9)
    assert taken == [truth(PROMPT + i) for i in range(9)]
    assert (stats.batches, stats.drafted, stats.accepted) == (1, 7, 7)


class AskedDrafter(ScriptedDrafter):
    """Drafts the true continuation and records the sizes asked for."""

    def __init__(self) -> None:
        super().__init__(set())
        self.asked: list[int] = []

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        self.asked.append(k)
        return super().draft(history, k)


def test_no_draft_runs_past_the_reply_s_token_limit() -> None:
    # Every draft is right. A 7-token draft after the first token reaches 9 tokens; with
    # a limit of 10 the next step has room for none (its one sampled token is the tenth),
    # where without a limit it would draft 15 and verify 6 rows past the end.
    llm, drafter, stats = FakeLlama(), AskedDrafter(), SpecStats(mode="lookup")
    tokens = speculate(llm, first_token(), drafter, stats, max_tokens=10)
    taken = [next(tokens) for _ in range(10)]
    assert taken == [truth(PROMPT + i) for i in range(10)]
    assert drafter.asked == [7]
    assert max(llm.rows) < PROMPT + 10  # no row beyond the tenth token's position
    tokens.close()
    # Without the limit (or with a far one) the same reply drafts 7 and then 15.
    llm, drafter = FakeLlama(), AskedDrafter()
    tokens = speculate(llm, first_token(), drafter, SpecStats(mode="lookup"), max_tokens=1000)
    assert [next(tokens) for _ in range(10)] == taken
    assert drafter.asked == [7, 15]
    tokens.close()


def test_near_the_limit_a_draft_shrinks_to_a_size_that_pays() -> None:
    # After 9 tokens (the first and a kept 7-token draft, and the bonus), a limit of 14
    # leaves 5 to take: a draft of 3 (4 rows) and one sampled token, then one more token.
    llm, drafter = FakeLlama(), AskedDrafter()
    tokens = speculate(llm, first_token(), drafter, SpecStats(mode="lookup"), max_tokens=14)
    assert [next(tokens) for _ in range(14)] == [truth(PROMPT + i) for i in range(14)]
    assert drafter.asked == [7, 3]
    assert max(llm.rows) < PROMPT + 14
    tokens.close()
