"""A reply over a message larger than the context, in the app: map-reduce
(:mod:`gemma_chat.longinput`), as ``ask`` does with ``long_input = "map"``.

:func:`reply_events` stands in for ``engine.stream`` in the generate worker: it yields
the answer's :class:`TextDelta` events and one :class:`ReplyDone`, and posts a progress
line to the status bar for each call (the worker only posts messages). The answer's
notes go with the result, for the history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from gemma_chat.chat.context import reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, ReplyStats, TextDelta
from gemma_chat.longinput.runner import LongDone, MapReduce, StepStarted
from gemma_chat.longinput.split import Source


def fits(app: Any, text: str, n_ctx: int) -> bool:
    """Whether ``text`` can fit the context at all (the bound ``ask`` checks before
    tokenizing): tokenizing megabytes would hold the reply worker, and quitting,
    which waits for it, for minutes. The text stays in the input."""
    from gemma_chat.models.loader import check_input_size

    try:
        check_input_size(text, n_ctx)
    except GemmaChatError as exc:
        app.notify(f"{exc}; it stays in the input.", severity="warning", timeout=10)
        return False
    return True


def too_long(engine: Engine, system: str | None, message: str) -> bool:
    """Whether ``message`` alone cannot fit the context with the reply's reserve."""
    conversation = Conversation(system=system, turns=[Turn(Role.USER, message)])
    reserve = reply_reserve(engine.sampling.max_tokens, engine.n_ctx)
    return engine.count_tokens(conversation) > engine.n_ctx - reserve


Plan = tuple[list[Source], str | None]
"""What to split (the files, else the typed text) and the question asked of it."""


def long_plan(app: Any, message: str, typed: str) -> Plan | None:
    """The plan when ``message`` cannot fit the context and ``long_input = "map"``;
    None to send it as usual (a message far too large is not tokenized to know)."""
    from gemma_chat.models.loader import MAX_BYTES_PER_TOKEN

    engine = app.engine
    if app.settings.long_input != "map" or engine is None:
        return None
    huge = len(message.encode()) > engine.n_ctx * MAX_BYTES_PER_TOKEN
    if not huge and not too_long(engine, app.conversation.system, message):
        return None
    files = list(app.attachments.files)
    if files:
        return [Source(a.name, a.text) for a in files], typed
    return [Source("your message", typed)], None


def events_for(
    engine: Engine,
    conversation: Conversation,
    cancel: threading.Event,
    plan: Plan | None,
    status: Any,
    notes: dict[str, Any],
) -> Iterator[TextDelta | ReplyDone]:
    """``engine.stream``, or the part-by-part answer when there is a ``plan`` (its
    progress posted to ``status``, the status bar)."""
    if plan is None:
        return engine.stream(conversation, cancel)
    progress = lambda text: status.post_message(status.Progress(text))  # noqa: E731
    return reply_events(engine, conversation, plan, cancel, progress, notes)


def reply_events(
    engine: Engine,
    conversation: Conversation,
    plan: Plan,
    cancel: threading.Event,
    progress: Callable[[str], None],
    notes: dict[str, Any],
) -> Iterator[TextDelta | ReplyDone]:
    """Answer the pending message part by part: the answer's deltas, then its result
    (an empty one, stopped or failed, when the run ended before the answer). ``notes``
    receives the run's record (parts, calls, every step) for the history."""
    sources, question = plan
    history = conversation.turns[:-1]
    runner = MapReduce(engine, sources, question, conversation.system, history)
    result: LongDone | None = None
    for event in runner.run(cancel):
        if isinstance(event, StepStarted):
            progress(f"{event.kind} {event.number}/{event.calls}: {event.title}")
        elif isinstance(event, TextDelta):
            yield event
        elif isinstance(event, LongDone):
            result = event
    assert result is not None
    notes["map_reduce"] = {
        "chunks": len(result.plan.chunks),
        "calls": len(result.steps),
        "input_tokens": result.plan.input_tokens,
        "evaluated_tokens": sum(step.evaluated_tokens for step in result.steps),
        "steps": result.notes,
    }
    done = result.done
    if done is not None and result.steps and result.steps[-1].title == "the answer":
        yield replace(done, token_ids=None)  # its ids answer the reduce prompt, not this one
        return
    reason = StopReason.FAILED if result.failed is not None else StopReason.CANCELLED
    error = result.failed.error if result.failed is not None else None
    yield ReplyDone("", reason, None, ReplyStats(0, 0, 0, None, None, 0.0, 0, 0), error=error)
