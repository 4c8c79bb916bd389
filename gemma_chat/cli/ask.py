"""``gemma-chat ask``: one question, one streamed answer on stdout."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from gemma_chat.backend.sse import RemoteError
from gemma_chat.chat.conversation import StopReason
from gemma_chat.cli import long_ask
from gemma_chat.cli.exchange import Exchange, open_exchange
from gemma_chat.cli.inputs import read_input
from gemma_chat.cli.options import HistoryOptions, RunOptions
from gemma_chat.cli.output import notify
from gemma_chat.cli.render import MarkdownWriter, PlainWriter
from gemma_chat.cli.speculation import speculation_dict, speculation_text
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.errors import ContextError, GemmaChatError, UsageError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.models.loader import RemoteModelInfo, load_backend
from gemma_chat.models.resolve import ModelInfo
from gemma_chat.sanitize import json_safe, one_line
from gemma_chat.structured.constraint import OutputConstraint
from gemma_chat.structured.validate import InvalidReply, check_reply

EXIT_INTERRUPTED = 130


def run_ask(
    settings: Settings,
    question: str | None,
    options: RunOptions,
    history: HistoryOptions | None = None,
    constraint: OutputConstraint | None = None,
    prompt: SavedPrompt | None = None,
    files: Sequence[str] = (),
) -> int:
    """Answer one question (after the attached ``files`` and piped text), saving the
    exchange in the history; return the exit code.

    A saved ``prompt``'s template makes the user message of the question and piped text
    (its system text and sampling are already in ``settings``).

    With a ``constraint`` (``--schema``, ``--grammar``) the reply follows it; a schema
    reply is validated, and one that does not match is an error (exit 1) after it is
    saved, marked.

    Raises:
        GemmaChatError: Bad input, a bad model or history, a message too long for the
            context, or a reply that does not match the schema.
    """
    user_input = read_input(question, files)
    message = user_input.message
    if prompt is not None:
        message = prompt.fill(message)
    cancel = threading.Event()
    with _stop_signals(cancel) as stop:
        # Before the model load: a corrupt history or an unknown id fails at once.
        exchange = open_exchange(settings, history or HistoryOptions())
        # --long map: an input larger than the context is answered part by part.
        long_map = exchange.settings.long_input == "map" and constraint is None
        try:
            checked = None if long_map else message  # refused before the load otherwise
            info, backend = load_backend(exchange.settings, notify, checked, cancel=cancel)
            if cancel.is_set():  # Ctrl+C (or SIGTERM/SIGHUP) while the model was loading
                return stop.exit_code
            exchange.user_meta = long_ask.input_meta(user_input, backend)  # attached files
            code = None
            if long_map:
                report = long_ask.Report(result_dict, stats_line)
                code = long_ask.answer_if_long(
                    exchange, options, user_input, info, backend, cancel, report
                )
            if code is None:
                code = _answer(exchange, options, message, info, backend, cancel, constraint)
        except OSError:
            if not stop.terminated:
                raise
            code = 0  # stdout went with the terminal that hung up; the reply is saved
        finally:
            exchange.close()
    # SIGTERM and SIGHUP end like Ctrl+C (the partial reply was saved), with their code.
    return stop.exit_code if stop.terminated else code


def _answer(
    exchange: Exchange,
    options: RunOptions,
    message: str,
    info: ModelInfo | RemoteModelInfo,
    backend: Any,
    cancel: threading.Event,
    constraint: OutputConstraint | None = None,
) -> int:
    settings = exchange.settings
    engine = Engine(backend, settings.sampling, settings.repeat_guard, constraint)
    conversation = exchange.conversation(info, message)  # the user message is saved here
    exchange.restore_state(engine, conversation, info)  # a continued chat's KV state
    writer = None
    if not options.json:
        # JSON or a grammar's output is data: never rendered as Markdown.
        use_markdown = sys.stdout.isatty() and not options.plain and constraint is None
        writer = MarkdownWriter() if use_markdown else PlainWriter(raw=options.raw)
    done: ReplyDone | None = None
    lost: OSError | None = None  # why stdout stopped taking the reply
    try:
        for event in engine.stream(conversation, cancel):
            if isinstance(event, TextDelta):
                if writer is not None:
                    try:
                        writer.write(event.text)
                    except OSError as exc:
                        # The reader went away (`| head`, or a terminal that hung up):
                        # stop, but keep the reply.
                        writer, lost = None, exc
                        cancel.set()
            else:
                done = event
    except (ContextError, RemoteError, UsageError):
        # UsageError: a grammar llama.cpp cannot parse, found when the reply starts.
        exchange.unsend()  # nothing was answered: the question is not left alone in the history
        raise
    finally:
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                lost = exc
    assert done is not None
    refused = getattr(backend, "constraint_refused", None)
    if constraint is not None and refused:
        notify(
            f"the server refused the {_kind(constraint)}, so the reply was not constrained "
            f"(only validated here): {refused}"
        )
    data, invalid = None, None
    if constraint is not None and done.stop_reason is not StopReason.CANCELLED:
        data, invalid = _check(done, constraint)
        if invalid is not None and done.error:  # a server failure cut it: say the cause
            what = "JSON" if constraint.schema is not None else "grammar"
            invalid = InvalidReply(
                f"the reply was cut off before its {what} was complete: {done.error} "
                "(the partial reply is kept)"
            )
        if invalid is not None and done.stop_reason is StopReason.END_OF_TURN:
            done = replace(done, stop_reason=StopReason.SCHEMA_MISMATCH)  # saved, marked
    exchange.reply(done, info)  # a reply stopped by Ctrl+C is saved too, marked partial
    conversation.add_model(done.text, done.stop_reason, done.token_ids)
    exchange.save_state(engine, conversation, info)
    if lost is not None:
        raise lost  # main() exits quietly for a closed pipe, in one line for the rest
    result = result_dict(done, info, backend.info)
    result["conversation_id"] = exchange.conversation_id
    # The stored messages, for `ask --from` and `history show --tree` (null: not saved).
    result["question_id"], result["reply_id"] = exchange.question_id, exchange.reply_id
    if constraint is not None and constraint.schema is not None:
        result["data"] = data  # the validated value (null when the reply did not match)
    if invalid is not None:
        result["error"] = str(invalid)
    if options.json:
        print(json_safe(json.dumps(result, ensure_ascii=False)))
    if options.stats:
        print(one_line(stats_line(result)), file=sys.stderr)  # names the model
    if done.stats.dropped_turns:
        notify(f"{done.stats.dropped_turns} old turns were left out to fit the context")
    if invalid is not None:
        # One line, exit 1; the raw reply was printed and saved, marked (partial).
        raise invalid
    if done.stop_reason is StopReason.FAILED:
        # A cut-off answer must not pass for a complete one: one line, exit 1. What
        # arrived was printed and saved (marked partial).
        raise GemmaChatError(f"the reply was cut off: {done.error} (the partial reply is kept)")
    return EXIT_INTERRUPTED if done.stop_reason is StopReason.CANCELLED else 0


def _kind(constraint: OutputConstraint) -> str:
    return "schema" if constraint.schema is not None else "grammar"


def _check(done: ReplyDone, constraint: OutputConstraint) -> tuple[Any, InvalidReply | None]:
    """The reply's validated value (None for a grammar), or why it is not one."""
    try:
        return check_reply(done.text, done.stop_reason.value, constraint), None
    except InvalidReply as exc:
        return None, exc


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a reply the way Ctrl+C does: what arrived is kept and saved."""


@dataclass
class _Stop:
    """The first stop signal received, if any."""

    signum: int | None = None

    @property
    def terminated(self) -> bool:
        """Whether SIGTERM or SIGHUP (not Ctrl+C) stopped the run."""
        return self.signum in (signal.SIGTERM, signal.SIGHUP)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 for Ctrl+C, 143 for SIGTERM, 129 for SIGHUP)."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def _stop_signals(cancel: threading.Event) -> Iterator[_Stop]:
    """The first Ctrl+C, SIGTERM or SIGHUP stops the reply cleanly (keeping and saving
    what was printed), or skips it when the model is still loading; a second one exits
    at once with 128 + its number.

    The handler never raises: during the model load Python only runs inside llama.cpp's
    log callbacks, where ctypes would swallow an exception.
    """
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            with suppress(OSError):  # a hung-up terminal cannot take the rest
                sys.stdout.flush()
            os._exit(128 + signum)
        stop.signum = signum
        cancel.set()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def result_dict(
    done: ReplyDone, info: ModelInfo | RemoteModelInfo, backend_info: Any
) -> dict[str, Any]:
    """The ``--json`` object: the reply, why it stopped, and how it was made."""
    stats = done.stats
    return {
        "text": done.text,
        "stop_reason": done.stop_reason.value,
        "model": info.display_name,
        "model_path": info.path,
        "architecture": info.architecture,
        "quantization": info.quantization,
        "context_length": info.context_length,
        "n_ctx": backend_info.n_ctx,
        "prompt_tokens": stats.prompt_tokens,
        "evaluated_tokens": stats.evaluated_tokens,
        "completion_tokens": stats.completion_tokens,
        "ttft_s": _round(stats.ttft_s),
        "tokens_per_s": _round(stats.tokens_per_s, 2),
        "total_s": _round(stats.total_s),
        "device": backend_info.device,
        "gpu_layers": backend_info.gpu_layers,
        "threads": backend_info.threads,
        "dropped_turns": stats.dropped_turns,
        "seed": stats.seed,
        # The remote backend: which endpoint answered, and whether the token counts are
        # the server's (`usage`) or gemma-chat's estimates.
        "api_path": getattr(stats, "api_path", None),
        "tokens_estimated": bool(getattr(stats, "estimated", False)),
        # How the reply's end was found on a server: by token id, or by stop strings.
        "stop_method": getattr(stats, "stop_method", None),
        **speculation_dict(stats),
    }


def stats_line(result: dict[str, Any]) -> str:
    """The ``--stats`` line."""
    ttft = f"{result['ttft_s']:.3f} s" if result["ttft_s"] is not None else "n/a"
    speed = f"{result['tokens_per_s']:.1f} tok/s" if result["tokens_per_s"] else "n/a tok/s"
    if result["device"] == "gpu":
        device = f"GPU ({result['gpu_layers']} layers)"
    elif result["device"] == "remote":
        device = f"remote {result['model_path']}"
    else:
        device = f"CPU ({result['threads']} threads)"
    about = (
        f"{result['architecture']}, ctx {result['n_ctx']}"
        if result["architecture"] == "remote"
        else f"{result['architecture']}, ctx {result['n_ctx']}/{result['context_length']}"
    )
    est = "~" if result.get("tokens_estimated") else ""  # estimates, not the server's count
    path = f" | path: {result['api_path']}" if result.get("api_path") else ""
    if result.get("stop_method"):
        path += f" (stop by {result['stop_method']})"
    return (
        f"stats: {result['model']} ({about}) | prompt {est}{result['prompt_tokens']} tok, "
        f"evaluated {est}{result['evaluated_tokens']} | generated {est}"
        f"{result['completion_tokens']} tok{' (estimated)' if est else ''} | TTFT {ttft} | "
        f"{speed}{speculation_text(result)} | stop: {result['stop_reason']}{path} | {device}"
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
