"""``ask`` over an input larger than the context: map-reduce (``--long map``, the default).

One line on stderr says how many parts and model calls it takes; a progress bar follows
on stderr when it is a terminal. Only the answer (the last call) goes to stdout. The
history stores the user's message (with the attached files' names and sizes) and the
answer, with every step's note, tokens and stop reason as the reply's metadata
(``history show --verbose``). Ctrl+C stops the run (exit 130, the notes so far are kept);
a failing step ends it with one line (exit 1), never skipped.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from gemma_chat.chat.context import reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.cli.exchange import Exchange
from gemma_chat.cli.inputs import UserInput
from gemma_chat.cli.options import RunOptions
from gemma_chat.cli.output import notify
from gemma_chat.cli.render import MarkdownWriter, PlainWriter
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, ReplyStats, TextDelta
from gemma_chat.generation.text_counts import estimate_tokens
from gemma_chat.longinput.runner import LongDone, MapReduce, StepStarted
from gemma_chat.longinput.split import Source
from gemma_chat.sanitize import json_safe, one_line

EXIT_INTERRUPTED = 130


class Report(NamedTuple):
    """How ``ask`` reports a reply: its ``--json`` object and its ``--stats`` line."""

    result: Callable[[ReplyDone, Any, Any], dict[str, Any]]
    stats: Callable[[dict[str, Any]], str]


def too_long(engine: Engine, system: str | None, message: str) -> bool:
    """Whether ``message`` alone cannot fit the context with the reply's reserve."""
    conversation = Conversation(system=system, turns=[Turn(Role.USER, message)])
    reserve = reply_reserve(engine.sampling.max_tokens, engine.n_ctx)
    return engine.count_tokens(conversation) > engine.n_ctx - reserve


def sources_of(user_input: UserInput) -> tuple[list[Source], str | None]:
    """The texts to split (files, then piped text) and the question asked of them; a
    question too long by itself is split too (then the default question is asked)."""
    sources = [Source(a.name, a.text) for a in user_input.attachments]
    if user_input.piped and user_input.piped.strip():
        sources.append(Source("stdin", user_input.piped))
    if not sources:
        return [Source("the message", user_input.question or "")], None
    return sources, user_input.question


def input_meta(user_input: UserInput, backend: Any) -> dict[str, Any] | None:
    """The attached files' names, sizes and tokens (the model's tokenizer; an estimate
    for a server), kept with the user message."""
    if not user_input.attachments:
        return None
    tokenizer = None if backend.is_remote else backend.tokenizer
    files = [
        {
            "name": a.name,
            "size": a.size,
            "tokens": (
                len(tokenizer.tokenize(a.block()))
                if tokenizer is not None
                else estimate_tokens(a.block())
            ),
        }
        for a in user_input.attachments
    ]
    return {"attachments": files}


def plan_line(runner: MapReduce) -> str:
    """The one line that says what the run will cost."""
    plan = runner.plan
    parts = len(plan.chunks)
    calls = f"{plan.min_calls} model calls"
    if plan.max_calls > plan.min_calls:
        calls += f" (up to {plan.max_calls} if the notes need combining)"
    return (
        f"the input ({plan.input_tokens:,} tokens) is larger than the context "
        f"({runner.engine.n_ctx:,} tokens): answering it in {parts} parts, {calls}"
    )


class ProgressBar:
    """A one-line progress bar on a terminal's stderr (nothing when it is not one)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.shown = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, event: StepStarted) -> None:
        """Show call ``number`` of ``calls``."""
        if not self.shown:
            return
        width = 20
        done = width * (event.number - 1) // max(event.calls, 1)
        bar = "#" * done + "-" * (width - done)
        line = one_line(f"[{bar}] {event.number}/{event.calls} {event.kind}: {event.title}")
        self.stream.write(f"\r\x1b[2K{line[:200]}")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the bar (before the answer, and at the end)."""
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def answer_if_long(
    exchange: Exchange,
    options: RunOptions,
    user_input: UserInput,
    info: Any,
    backend: Any,
    cancel: threading.Event,
    report: Report,
) -> int | None:
    """Answer part by part when the message cannot fit the context (see
    :func:`answer_long`); None when it fits (``ask`` answers it as usual)."""
    settings = exchange.settings
    engine = Engine(backend, settings.sampling, settings.repeat_guard)
    if not too_long(engine, settings.system, user_input.message):
        return None
    return answer_long(exchange, options, user_input, info, backend, cancel, report)


def answer_long(
    exchange: Exchange,
    options: RunOptions,
    user_input: UserInput,
    info: Any,
    backend: Any,
    cancel: threading.Event,
    report: Report,
) -> int:
    """Answer over an input larger than the context; return the exit code.

    ``report`` makes the ``--json`` object and the ``--stats`` line of a reply (``ask``'s
    own, so that both paths report alike).

    Raises:
        ContextError: The question alone leaves no room for any part.
        GemmaChatError: A step failed (its notes so far are saved).
    """
    settings = exchange.settings
    engine = Engine(backend, settings.sampling, settings.repeat_guard)
    sources, question = sources_of(user_input)
    history = _history(exchange, info)
    runner = MapReduce(engine, sources, question, settings.system, history)
    notify(plan_line(runner))
    conversation = exchange.conversation(info, user_input.message)  # saved now
    writer = None
    if not options.json:
        use_markdown = sys.stdout.isatty() and not options.plain
        writer = MarkdownWriter() if use_markdown else PlainWriter(raw=options.raw)
    bar = ProgressBar()
    result: LongDone | None = None
    try:
        for event in runner.run(cancel):
            if isinstance(event, StepStarted):
                bar.update(event)
                if event.kind == "reduce" and event.title == "the answer":
                    bar.clear()
            elif isinstance(event, TextDelta):
                if writer is not None:
                    writer.write(event.text)
            elif isinstance(event, LongDone):
                result = event
    finally:
        bar.clear()
        if writer is not None:
            writer.close()
    assert result is not None
    done = _answer_of(result)
    exchange.reply(done, info, meta={"map_reduce": _meta(result)})
    conversation.add_model(done.text, done.stop_reason, None)
    payload = report.result(done, info, backend.info)
    payload["long_input"] = _meta(result)
    payload["conversation_id"] = exchange.conversation_id
    payload["question_id"], payload["reply_id"] = exchange.question_id, exchange.reply_id
    if options.json:
        print(json_safe(json.dumps(payload, ensure_ascii=False)))
    if options.stats:
        print(one_line(report.stats(payload)), file=sys.stderr)
    if result.failed is not None:
        step = result.failed
        raise GemmaChatError(
            f"{step.kind} of {step.title} failed: {step.error or 'no reply'} (the notes so "
            "far are kept in the history)"
        )
    return EXIT_INTERRUPTED if result.cancelled else 0


def _history(exchange: Exchange, info: Any) -> list[Turn]:
    """The continued conversation's turns (none for a new one)."""
    if exchange.record is None:
        return []
    from gemma_chat.history.turns import to_conversation

    turns = to_conversation(exchange.record, exchange.messages, info.sha256).turns
    if turns and turns[-1].role is Role.USER:
        turns = turns[:-1]  # an unanswered question: it is not this run's
    return turns


def _answer_of(result: LongDone) -> ReplyDone:
    """The reply to save: the last call's, or an empty one marked stopped or failed when
    the run ended before its answer."""
    done = result.done
    last = result.steps[-1] if result.steps else None
    if done is not None and last is not None and last.title == "the answer":
        return done
    reason = StopReason.FAILED if result.failed is not None else StopReason.CANCELLED
    stats = ReplyStats(0, 0, 0, None, None, 0.0, 0, done.stats.seed if done else 0)
    error = result.failed.error if result.failed is not None else None
    return ReplyDone("", reason, None, stats, error=error)


def _meta(result: LongDone) -> dict[str, Any]:
    """The run for the history and ``--json``: parts, calls, tokens and every step."""
    return {
        "chunks": len(result.plan.chunks),
        "calls": len(result.steps),
        "input_tokens": result.plan.input_tokens,
        "evaluated_tokens": sum(step.evaluated_tokens for step in result.steps),
        "steps": result.notes,
    }
