"""The reply loop: Gemma's stop rules, written once for every backend.

It runs over the pieces of a :class:`~gemma_chat.generation.sources.PieceSource` (a token
backend's ids or a server's chunks), shows the text as it becomes safe, and decides when
the reply ends. Nothing after the stop point is ever yielded or stored:

* the backend ended the turn (``<end_of_turn>``, ``<eos>``, another end-of-generation id):
  ``end_of_turn``; a new ``<start_of_turn>``: ``new_turn``;
* either marker spelled out as plain text (:class:`MarkerFilter`): ``end_of_turn``, and
  the marker is never shown;
* the repetition guard: ``repetition``; the max-tokens limit: ``max_tokens``; a full
  context (exact counts only): ``context_full``; the cancel event: ``cancelled``;
* a backend that fails after some text arrived: ``failed`` (the partial text is kept; a
  failure before any text raises);
* the backend stopping by itself: what the source says (a server's finish reason).

A new stop rule goes here, once; a new kind of backend gets a source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from gemma_chat.backend.base import Cancelled
from gemma_chat.backend.sse import RemoteError
from gemma_chat.chat.conversation import StopReason
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.events import ReplyDone, ReplyStats, TextDelta
from gemma_chat.generation.repetition import RepetitionDetector
from gemma_chat.generation.sources import Piece, PieceSource
from gemma_chat.generation.textstream import MarkerFilter, Utf8Stream


def run_reply(
    source: PieceSource,
    *,
    sampling: Sampling,
    repeat_guard: RepeatGuard,
    n_ctx: int,
    seed: int,
    cancel: threading.Event | None = None,
) -> Iterator[TextDelta | ReplyDone]:
    """Generate one reply from ``source``: :class:`TextDelta` events, then exactly one
    :class:`ReplyDone`.

    ``sampling`` and ``repeat_guard`` are the reply's own: a change while it streams
    applies to the next one, as the recorded settings say.

    Raises:
        RemoteError: A server failed before sending any text.
    """
    return _Reply(source, sampling, repeat_guard, n_ctx, seed).run(cancel)


def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


class _Reply:
    """The state of one reply as it streams: decoding, the guards, timing."""

    def __init__(
        self,
        source: PieceSource,
        sampling: Sampling,
        repeat_guard: RepeatGuard,
        n_ctx: int,
        seed: int,
    ) -> None:
        self.source, self.sampling, self.repeat_guard = source, sampling, repeat_guard
        self.n_ctx, self.seed = n_ctx, seed
        self.utf8, self.markers = Utf8Stream(), MarkerFilter()
        self.guard = RepetitionDetector(repeat_guard)
        self.generated: list[Piece] = []
        self.shown: list[str] = []
        self.received = 0
        self.start = time.perf_counter()
        self.first_at: float | None = None
        self.last_at: float | None = None

    def run(self, cancel: threading.Event | None) -> Iterator[TextDelta | ReplyDone]:
        stop: StopReason | None = None
        error: str | None = None
        pieces = self.source.pieces(self.seed, cancel)
        try:
            for piece in pieces:
                self.last_at = time.perf_counter()
                self.first_at = self.first_at or self.last_at
                self.received += 1
                if _is_set(cancel):
                    stop = StopReason.CANCELLED
                    break
                if piece.end is not None:
                    stop = piece.end
                    break
                text = self._accept(piece)
                if text:
                    self.shown.append(text)
                    yield TextDelta(text)
                stop = self._limit_reached(piece)
                if stop is not None:
                    break
        except RemoteError as failure:
            if _is_set(cancel):
                stop = StopReason.CANCELLED
            elif not self.generated:
                raise
            else:
                stop, error = StopReason.FAILED, str(failure)
        except Cancelled:
            stop = StopReason.CANCELLED
        finally:
            pieces.close()
        if stop is None:
            stop = StopReason.CANCELLED if _is_set(cancel) else self.source.end_of_stream()
        tail = self._tail()
        if tail:
            self.shown.append(tail)
            yield TextDelta(tail)
        yield self._done(stop, error)

    def _accept(self, piece: Piece) -> str:
        """Take a piece into the reply; return the text that is now safe to show."""
        self.generated.append(piece)
        data = piece.data
        return self.markers.feed(self.utf8.feed(data) if isinstance(data, bytes) else data)

    def _limit_reached(self, piece: Piece) -> StopReason | None:
        generated = len(self.generated)
        if self.markers.found is not None:
            return StopReason.END_OF_TURN
        if self.guard.add(piece.key):
            return StopReason.REPETITION
        if generated >= self.sampling.max_tokens:
            return StopReason.MAX_TOKENS
        source = self.source
        if source.exact and source.prompt_tokens + generated >= self.n_ctx:
            return StopReason.CONTEXT_FULL
        return None

    def _tail(self) -> str:
        """Held text released at the end (nothing after a marker spelled as text)."""
        if self.markers.found is not None:
            return ""
        return self.markers.feed(self.utf8.finish()) + self.markers.flush()

    def _done(self, stop: StopReason, error: str | None) -> ReplyDone:
        text = "".join(self.shown)
        counts = self.source.counts(len(self.generated))
        first, last, received = self.first_at, self.last_at, self.received
        decode_s = (last - first) if first and last else 0.0
        stats = ReplyStats(
            prompt_tokens=counts.prompt_tokens,
            evaluated_tokens=counts.evaluated_tokens,
            completion_tokens=counts.completion_tokens,
            ttft_s=(first - self.start) if first else None,
            tokens_per_s=(received - 1) / decode_s if decode_s > 0 and received > 1 else None,
            total_s=time.perf_counter() - self.start,
            dropped_turns=self.source.dropped_turns,
            seed=self.seed,
            estimated=counts.estimated,
            api_path=counts.api_path,
            stop_method=counts.stop_method,
        )
        ids = None if self.markers.found else self.source.history_ids(self.generated, text)
        return ReplyDone(text, stop, ids, stats, self.sampling, self.repeat_guard, error)
