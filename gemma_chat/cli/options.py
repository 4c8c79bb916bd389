"""Command-line options shared by ``ask``, ``prompt`` and the bare command (they become
:class:`~gemma_chat.config.settings.Settings` in :mod:`gemma_chat.cli.run_settings`)."""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from gemma_chat.config.settings import SAMPLING_KEYS
from gemma_chat.errors import UsageError

MODEL = "Model"
SAMPLING = "Sampling"
OUTPUT = "Output"
HISTORY = "History"
REMOTE = "Remote server"

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="GGUF model: a path, a short name (see: gemma-chat models), or 'demo'.",
        rich_help_panel=MODEL,
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option(
        "--system",
        "-s",
        help="System prompt (folded into the first user turn).",
        rich_help_panel=MODEL,
    ),
]
CtxOpt = Annotated[
    int | None,
    typer.Option(
        "--ctx", help="Context size in tokens (rounded up to 256).", rich_help_panel=MODEL
    ),
]
GpuOpt = Annotated[
    bool | None,
    typer.Option(
        "--gpu/--cpu",
        help="Offload to the GPU, or force the CPU. Default: the GPU when the build supports it.",
        rich_help_panel=MODEL,
        show_default=False,
    ),
]
GpuLayersOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-layers",
        metavar="N|all|auto",
        help="Layers to offload to the GPU (default auto: as many as fit in free VRAM).",
        rich_help_panel=MODEL,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads", "-t", help="CPU threads (default: all cores).", rich_help_panel=MODEL
    ),
]
FlashAttnOpt = Annotated[
    bool | None,
    typer.Option(
        "--flash-attn/--no-flash-attn",
        help="Flash attention (default: on).",
        rich_help_panel=MODEL,
        show_default=False,
    ),
]
SpeculativeOpt = Annotated[
    str | None,
    typer.Option(
        "--speculative",
        metavar="auto|off|lookup|draft",
        help="Speculative decoding: drafts from the prompt (lookup) or a draft model, "
        "verified in batches; greedy output is unchanged (default: auto).",
        rich_help_panel=MODEL,
        show_default=False,
    ),
]
DraftModelOpt = Annotated[
    str | None,
    typer.Option(
        "--draft-model",
        metavar="PATH|NAME",
        help="A small model with the same vocabulary that drafts tokens (--speculative draft).",
        rich_help_panel=MODEL,
        show_default=False,
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="local|openai",
        help="Run the model here (local) or on an OpenAI-compatible server (openai).",
        rich_help_panel=REMOTE,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        metavar="URL",
        help="The server's API root, e.g. http://host:8080/v1 (implies --backend openai).",
        rich_help_panel=REMOTE,
    ),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        metavar="NAME",
        help="Use the [remote.NAME] server from the config (the API key comes from the "
        "environment variable its api_key_env names).",
        rich_help_panel=REMOTE,
    ),
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens", "-n", help="Most tokens in the reply [1024].", rich_help_panel=SAMPLING
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(
        "--temperature", "--temp", help="Temperature; 0 is greedy [1.0].", rich_help_panel=SAMPLING
    ),
]
TopPOpt = Annotated[
    float | None, typer.Option("--top-p", help="Top-p [0.95].", rich_help_panel=SAMPLING)
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help="Top-k [64].", rich_help_panel=SAMPLING)
]
MinPOpt = Annotated[
    float | None, typer.Option("--min-p", help="Min-p [0.0].", rich_help_panel=SAMPLING)
]
RepeatPenaltyOpt = Annotated[
    float | None,
    typer.Option(
        "--repeat-penalty", help="Repetition penalty [1.0: off].", rich_help_panel=SAMPLING
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Random seed (same seed, same reply).", rich_help_panel=SAMPLING),
]
NoRepeatGuardOpt = Annotated[
    bool,
    typer.Option(
        "--no-repeat-guard", help="Do not stop replies that loop.", rich_help_panel=SAMPLING
    ),
]
StatsOpt = Annotated[
    bool,
    typer.Option("--stats", help="Print one line of statistics on stderr.", rich_help_panel=OUTPUT),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON object instead of the text.", rich_help_panel=OUTPUT
    ),
]
PlainOpt = Annotated[
    bool, typer.Option("--plain", help="Plain text even on a terminal.", rich_help_panel=OUTPUT)
]
RawOpt = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Write the model's text unchanged, escape sequences included (only when "
        "stdout is not a terminal; by default they are shown, never obeyed).",
        rich_help_panel=OUTPUT,
    ),
]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show llama.cpp's log and tracebacks.", rich_help_panel=OUTPUT),
]

ContinueOpt = Annotated[
    bool,
    typer.Option(
        "--continue", "-c", help="Continue the most recent conversation.", rich_help_panel=HISTORY
    ),
]


def conversation_id(value: int | None) -> int | None:
    """Check a conversation id (SQLite ids are 1 to 2**63 - 1), without the range
    cluttering the help."""
    if value is not None and not 1 <= value < 2**63:
        raise typer.BadParameter(f"{value} is not a conversation id (see: gemma-chat history list)")
    return value


def message_id(value: int | None) -> int | None:
    """Check a message id, as :func:`conversation_id` does."""
    if value is not None and not 1 <= value < 2**63:
        raise typer.BadParameter(
            f"{value} is not a message id (see: gemma-chat history show ID --tree)"
        )
    return value


ConversationOpt = Annotated[
    int | None,
    typer.Option(
        "--conversation",
        metavar="ID",
        callback=conversation_id,
        help="Continue the conversation with this id (see: gemma-chat history list).",
        rich_help_panel=HISTORY,
    ),
]
FromOpt = Annotated[
    int | None,
    typer.Option(
        "--from",
        metavar="MSG",
        callback=message_id,
        help="With --conversation ID (or -c): continue from message MSG, on a new branch "
        "(see: gemma-chat history show ID --tree).",
        rich_help_panel=HISTORY,
    ),
]
ResumeOpt = Annotated[
    int | None,
    typer.Option(
        "--resume",
        metavar="ID",
        callback=conversation_id,
        help="Open the conversation with this id (see: gemma-chat history list).",
        rich_help_panel=HISTORY,
    ),
]
NoSaveOpt = Annotated[
    bool,
    typer.Option(
        "--no-save", help="Do not save this exchange in the history.", rich_help_panel=HISTORY
    ),
]

# The options `ask` and the bare command share, defined once: (name, type, default).
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("model", ModelOpt, None),
    ("system", SystemOpt, None),
    ("ctx_size", CtxOpt, None),
    ("gpu", GpuOpt, None),
    ("gpu_layers", GpuLayersOpt, None),
    ("threads", ThreadsOpt, None),
    ("flash_attn", FlashAttnOpt, None),
    ("speculative", SpeculativeOpt, None),
    ("draft_model", DraftModelOpt, None),
    ("backend", BackendOpt, None),
    ("base_url", BaseUrlOpt, None),
    ("remote", RemoteOpt, None),
    ("max_tokens", MaxTokensOpt, None),
    ("temperature", TemperatureOpt, None),
    ("top_p", TopPOpt, None),
    ("top_k", TopKOpt, None),
    ("min_p", MinPOpt, None),
    ("repeat_penalty", RepeatPenaltyOpt, None),
    ("seed", SeedOpt, None),
    ("no_repeat_guard", NoRepeatGuardOpt, False),
    ("stats", StatsOpt, False),
    ("json_out", JsonOpt, False),
    ("plain", PlainOpt, False),
    ("raw", RawOpt, False),
    ("debug", DebugOpt, False),
)


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command the :data:`SHARED_OPTIONS`; it receives them as ``options``.

    Typer reads a command's options from its signature, so the signature is extended
    here rather than repeating nineteen parameters on every command.
    """
    hints = typing.get_type_hints(func, include_extras=True)  # resolve string annotations
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(func).parameters.values()
        if p.name != "options"
    ]
    extra = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
        )
        for name, annotation, default in SHARED_OPTIONS
    ]

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name, _, _ in SHARED_OPTIONS}
        return func(**kwargs, options=options)

    command.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {
        **{p.name: p.annotation for p in own},
        **{name: annotation for name, annotation, _ in SHARED_OPTIONS},
    }
    return command


@dataclass(frozen=True)
class RunOptions:
    """Options that are about this run's output rather than the settings."""

    stats: bool = False
    json: bool = False
    plain: bool = False
    raw: bool = False
    """Write the model's text unsanitized (see :func:`check_raw`)."""


def check_raw(raw: bool) -> None:
    """Refuse ``--raw`` on a terminal.

    Model text is untrusted: unsanitized, its escape sequences would set the window
    title, write the clipboard or clear the screen. ``--raw`` is for a pipe or a file
    whose reader wants the exact bytes; a pipe that ends on a terminal (``| cat``,
    ``| less -R``) is the reader's choice to make.

    Raises:
        UsageError: ``raw`` is set and stdout is a terminal.
    """
    if raw and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError(
            "--raw writes escape sequences unchanged, so it only works when stdout is not "
            "a terminal (a pipe or a file)"
        )


# Command-line options that, given explicitly, win over a continued conversation's
# stored system prompt and parameters.
CONVERSATION_SETTINGS = ("system", *SAMPLING_KEYS, "no_repeat_guard")


@dataclass(frozen=True)
class HistoryOptions:
    """How a run uses the conversation history.

    Attributes:
        save: Save the exchange (``--no-save`` turns it off; so does ``save_history``
            in the config).
        continue_latest: Continue the most recent conversation (``--continue``).
        conversation: Continue this conversation (``--conversation`` / ``--resume``).
        from_message: Continue from this message of it, on a new branch (``--from``),
            not from the end of the branch last viewed.
        explicit: Which of :data:`CONVERSATION_SETTINGS` were given on the command line.
        option: How the command line names ``conversation``, for error messages.
    """

    save: bool = True
    continue_latest: bool = False
    conversation: int | None = None
    from_message: int | None = None
    explicit: frozenset[str] = frozenset()
    option: str = "--conversation"

    @property
    def continues(self) -> bool:
        """Whether the run continues a stored conversation."""
        return self.continue_latest or self.conversation is not None


def with_root_options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """Fill options not given after the command from those given before it."""
    root = ctx.obj or {}
    merged = dict(values)
    for key, value in root.items():
        if not option_given(merged.get(key)):
            merged[key] = value
    return merged


def option_given(value: Any) -> bool:
    # Identity, not equality: `--temperature 0` and `--seed 0` are given (0 == False).
    return value is not None and value is not False
