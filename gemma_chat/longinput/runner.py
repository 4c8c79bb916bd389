"""Map-reduce: answering over input larger than the context.

The sources are split into chunks that fit next to the question and the reply reserve
(:mod:`gemma_chat.longinput.split`); the question is asked of each chunk (map), and the
notes are combined into the answer (reduce), in more than one round when they do not
fit one prompt. Every step is one ordinary reply of the same :class:`Engine`, with the
same stop rules; notes are at most the reply reserve long, so that the rounds converge.

:meth:`MapReduce.run` yields :class:`StepStarted` and :class:`StepFinished` for each
call, the last call's :class:`TextDelta` events (the answer), and one :class:`LongDone`.
Cancelling stops the run between tokens (what was produced is in ``LongDone.steps``); a
step that fails ends the run with ``LongDone.failed`` set: no step is ever skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from gemma_chat.backend.sse import RemoteError
from gemma_chat.chat.attachments import fence_for
from gemma_chat.chat.context import reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.errors import ContextError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.generation.text_counts import estimate_tokens
from gemma_chat.longinput.prompts import DEFAULT_QUESTION, Note, map_prompt, reduce_prompt
from gemma_chat.longinput.split import Chunk, Source, split_sources

_MARGIN = 16
"""Tokens kept spare in each prompt for the tokenizer's merges across boundaries."""
_PLACEHOLDER = 9999
"""Part numbers assumed while measuring a prompt's overhead (before N is known)."""


@dataclass(frozen=True)
class Plan:
    """How an input will be answered.

    Attributes:
        chunks: The parts, in order.
        input_tokens: The sources' tokens.
        max_calls: The most model calls it can take (each note at its longest).
    """

    chunks: list[Chunk]
    input_tokens: int
    max_calls: int

    @property
    def min_calls(self) -> int:
        """The calls when all notes fit one reduce: one per chunk, plus one."""
        return len(self.chunks) + 1


@dataclass(frozen=True)
class Step:
    """One finished model call.

    Attributes:
        kind: ``map`` or ``reduce``.
        title: What it covered.
        prompt_tokens, evaluated_tokens, completion_tokens: Its token counts.
        stop_reason: Why its reply ended (``failed`` for an error).
        error: Why it failed, if it did.
        total_s: Its seconds.
        text: Its reply (a note, or the answer).
    """

    kind: str
    title: str
    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int
    stop_reason: str
    error: str | None
    total_s: float
    text: str

    def as_dict(self) -> dict[str, object]:
        """The step for ``--json`` and the history's notes."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class StepStarted:
    """Call ``number`` of at most ``calls`` began."""

    number: int
    calls: int
    kind: str
    title: str


@dataclass(frozen=True)
class StepFinished:
    """A call ended."""

    step: Step


@dataclass
class LongDone:
    """The end of a run.

    Attributes:
        plan: The plan it followed.
        steps: Every call made, in order (the last is the answer when it finished).
        done: The last call's reply (the answer, or the step that was cancelled).
        failed: The step that failed, if one did.
        cancelled: Whether the run was stopped before its answer was complete.
    """

    plan: Plan
    steps: list[Step] = field(default_factory=list)
    done: ReplyDone | None = None
    failed: Step | None = None
    cancelled: bool = False

    @property
    def notes(self) -> list[dict[str, object]]:
        """Every step, for the history and ``--json``."""
        return [step.as_dict() for step in self.steps]


class MapReduce:
    """Answers ``question`` over ``sources`` in calls that each fit the context.

    Args:
        engine: The engine every step runs on (its sampling and guard apply to all).
        sources: The files and piped text.
        question: The question (blank: :data:`DEFAULT_QUESTION`).
        system: The system prompt, folded into every call.
        history: Earlier turns of a continued conversation, kept before the last call
            (the oldest are dropped to fit, as usual).
    """

    def __init__(
        self,
        engine: Engine,
        sources: Sequence[Source],
        question: str | None,
        system: str | None = None,
        history: Sequence[Turn] = (),
    ) -> None:
        self.engine = engine
        self.question = (question or "").strip() or DEFAULT_QUESTION
        self.system = system
        self.history = list(history)
        self.labels = [source.label for source in sources if source.text.strip()]
        n_ctx = engine.n_ctx
        self.reserve = reply_reserve(engine.sampling.max_tokens, n_ctx)
        self.budget = n_ctx - self.reserve  # the most tokens a prompt may take
        # Notes are at most the reserve: a round of reduces always shrinks the notes.
        self._note_engine = replace(
            engine,
            sampling=engine.sampling.model_copy(update={"max_tokens": self.reserve}),
            constraint=None,
        )
        self.plan = self._plan(sources)

    # ------------------------------------------------------------------ counting

    def count(self, text: str) -> int:
        """Tokens of plain text: the model's tokenizer, or an estimate for a server."""
        template = self.engine.template
        if template is None:
            return estimate_tokens(text)
        return len(template.tokenizer.tokenize(text))

    def prompt_tokens(self, message: str) -> int:
        """Tokens of a one-message prompt (system prompt and template included)."""
        conversation = Conversation(system=self.system, turns=[Turn(Role.USER, message)])
        return self.engine.count_tokens(conversation)

    def _plan(self, sources: Sequence[Source]) -> Plan:
        chunks: list[Chunk] = []
        for source in sources:
            longest = fence_for(source.text)[3:]  # the fence's own backticks count too
            probe = Chunk(source.label, _PLACEHOLDER, _PLACEHOLDER, longest, 0)
            room = self.budget - self.prompt_tokens(map_prompt(probe, self.question)) - _MARGIN
            if room < 16:
                raise ContextError(
                    f"the question is too long to answer over {source.label} part by part: "
                    f"the context holds {self.engine.n_ctx} tokens with {self.reserve} kept "
                    "for the reply (try --ctx or a shorter question)"
                )
            chunks += split_sources([source], room, self.count)
        tokens = sum(chunk.tokens for chunk in chunks)
        return Plan(chunks, tokens, len(chunks) + self._worst_reduces(len(chunks)))

    def _worst_reduces(self, notes: int) -> int:
        """Reduce calls when every note is as long as allowed."""
        title = f"part {_PLACEHOLDER} of {_PLACEHOLDER} of {max(self.labels, key=len)}"
        note = Note(title, "")
        overhead = self.prompt_tokens(reduce_prompt([], self.labels, self.question, False))
        each = self.prompt_tokens(reduce_prompt([note], [], "", False)) - self.prompt_tokens(
            reduce_prompt([], [], "", False)
        )
        fits = max(2, (self.budget - overhead) // (self.reserve + each))
        calls = 1
        while notes > fits:
            notes = -(-notes // fits)
            calls += notes
        return calls

    # ------------------------------------------------------------------ running

    def run(
        self, cancel: threading.Event | None = None
    ) -> Iterator[StepStarted | StepFinished | TextDelta | LongDone]:
        """Map every chunk, then reduce the notes to the answer (see the module)."""
        result = LongDone(self.plan)
        calls = self.plan.max_calls
        notes: list[Note] = []
        for chunk in self.plan.chunks:
            number = len(result.steps) + 1
            yield StepStarted(number, calls, "map", chunk.title)
            message = map_prompt(chunk, self.question)
            step = yield from self._step(result, "map", chunk.title, message, cancel)
            if step is None:
                yield result
                return
            notes.append(Note(chunk.title, step.text, (number, number)))
        while True:
            try:
                groups = self._groups(notes)
            except ContextError as exc:
                failed = Step("reduce", "the notes", 0, 0, 0, "failed", str(exc), 0.0, "")
                result.steps.append(failed)
                result.failed = failed
                yield StepFinished(failed)
                yield result
                return
            final = len(groups) == 1
            next_notes: list[Note] = []
            for group in groups:
                span = (group[0].span[0], group[-1].span[1])
                title = "the answer" if final else _span(span, len(self.plan.chunks))
                calls = max(calls, len(result.steps) + 1)
                yield StepStarted(len(result.steps) + 1, calls, "reduce", title)
                message = reduce_prompt(group, self.labels, self.question, final)
                step = yield from self._step(result, "reduce", title, message, cancel, final)
                if step is None:
                    yield result
                    return
                next_notes.append(Note(title, step.text, span))
            if final:
                yield result
                return
            notes = next_notes

    def _groups(self, notes: list[Note]) -> list[list[Note]]:
        """Notes packed into reduce prompts that fit; one group means the final call.

        Raises:
            ContextError: Two notes cannot share one prompt (the question is too long).
        """
        if self.prompt_tokens(reduce_prompt(notes, self.labels, self.question, True)) <= (
            self.budget
        ):
            return [notes]
        groups: list[list[Note]] = [[]]
        for note in notes:
            trial = [*groups[-1], note]
            size = self.prompt_tokens(reduce_prompt(trial, self.labels, self.question, False))
            if size <= self.budget or not groups[-1]:
                groups[-1] = trial
            else:
                groups.append([note])
        if any(len(group) < 2 for group in groups[:-1]) or len(groups) >= len(notes):
            raise ContextError(
                "the notes are too long to combine in this context (try --ctx, a smaller "
                "--max-tokens or a shorter question)"
            )
        return groups

    def _step(
        self,
        result: LongDone,
        kind: str,
        title: str,
        message: str,
        cancel: threading.Event | None,
        final: bool = False,
    ) -> Iterator[StepFinished | TextDelta]:
        """Run one call; return its step, or None when the run ends here (cancelled or
        failed: ``result`` says which)."""
        engine = self.engine if final else self._note_engine
        turns = [*self.history, Turn(Role.USER, message)] if final else [Turn(Role.USER, message)]
        conversation = Conversation(system=self.system, turns=turns)
        done: ReplyDone | None = None
        error: str | None = None
        try:
            for event in engine.stream(conversation, cancel):
                if isinstance(event, TextDelta):
                    if final:
                        yield event
                else:
                    done = event
        except (ContextError, RemoteError) as exc:
            error = str(exc)
        if done is None:
            step = Step(kind, title, 0, 0, 0, StopReason.FAILED.value, error, 0.0, "")
        else:
            stats = done.stats
            step = Step(
                kind,
                title,
                stats.prompt_tokens,
                stats.evaluated_tokens,
                stats.completion_tokens,
                done.stop_reason.value,
                done.error,
                round(stats.total_s, 4),
                done.text,
            )
        result.steps.append(step)
        result.done = done
        yield StepFinished(step)
        if step.stop_reason == StopReason.FAILED.value:
            result.failed = step
            return None
        stopped = cancel is not None and cancel.is_set()
        if step.stop_reason == StopReason.CANCELLED.value or (stopped and not final):
            result.cancelled = True
            return None
        return step


def _span(span: tuple[int, int], parts: int) -> str:
    """The title of a combined note: ``notes on parts 1-4 of 9``."""
    return f"notes on parts {span[0]}-{span[1]} of {parts}"
