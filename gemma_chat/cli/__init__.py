"""The ``gemma-chat`` command line (Typer).

``main`` runs Typer in non-standalone mode so that every error, usage errors included,
is one line on stderr with a documented exit code: 1 for runtime errors, 2 for usage
errors, 130 after Ctrl+C. Tracebacks only appear with ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gemma_chat.cli import options as o
from gemma_chat.errors import GemmaChatError, UsageError

app = typer.Typer(
    name="gemma-chat",
    help="Chat with Gemma models running locally from GGUF files.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

QuestionArg = Annotated[
    str | None,
    typer.Argument(help="The question. Piped stdin is read too (piped text first)."),
]


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    model: o.ModelOpt = None,
    system: o.SystemOpt = None,
    ctx_size: o.CtxOpt = None,
    gpu: o.GpuOpt = None,
    gpu_layers: o.GpuLayersOpt = None,
    threads: o.ThreadsOpt = None,
    flash_attn: o.FlashAttnOpt = None,
    max_tokens: o.MaxTokensOpt = None,
    temperature: o.TemperatureOpt = None,
    top_p: o.TopPOpt = None,
    top_k: o.TopKOpt = None,
    min_p: o.MinPOpt = None,
    repeat_penalty: o.RepeatPenaltyOpt = None,
    seed: o.SeedOpt = None,
    no_repeat_guard: o.NoRepeatGuardOpt = False,
    stats: o.StatsOpt = False,
    json_out: o.JsonOpt = False,
    plain: o.PlainOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Chat with Gemma. With text piped in, answer it like ``ask`` does."""
    if ctx.invoked_subcommand is not None:
        return
    from gemma_chat.cli.inputs import stdin_is_piped

    settings = o.build_settings(**locals_of(locals()))
    if stdin_is_piped():
        from gemma_chat.cli.ask import run_ask

        raise typer.Exit(run_ask(settings, None, o.RunOptions(stats, json_out, plain)))
    raise UsageError(
        'the interactive TUI is not part of this version yet; use: gemma-chat ask "your question"'
    )


@app.command()
def ask(
    question: QuestionArg = None,
    model: o.ModelOpt = None,
    system: o.SystemOpt = None,
    ctx_size: o.CtxOpt = None,
    gpu: o.GpuOpt = None,
    gpu_layers: o.GpuLayersOpt = None,
    threads: o.ThreadsOpt = None,
    flash_attn: o.FlashAttnOpt = None,
    max_tokens: o.MaxTokensOpt = None,
    temperature: o.TemperatureOpt = None,
    top_p: o.TopPOpt = None,
    top_k: o.TopKOpt = None,
    min_p: o.MinPOpt = None,
    repeat_penalty: o.RepeatPenaltyOpt = None,
    seed: o.SeedOpt = None,
    no_repeat_guard: o.NoRepeatGuardOpt = False,
    stats: o.StatsOpt = False,
    json_out: o.JsonOpt = False,
    plain: o.PlainOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Answer one question on stdout, streaming. Ctrl+C stops (exit 130)."""
    from gemma_chat.cli.ask import run_ask

    settings = o.build_settings(**locals_of(locals()))
    raise typer.Exit(run_ask(settings, question, o.RunOptions(stats, json_out, plain)))


@app.command()
def prompt(
    question: QuestionArg = None,
    model: o.ModelOpt = None,
    system: o.SystemOpt = None,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Print the exact rendered Gemma prompt, control tokens visible (a template inspector)."""
    from gemma_chat.cli.prompt import run_prompt

    settings = o.build_settings(model=model, system=system, debug=debug or None)
    raise typer.Exit(run_prompt(settings, question, json_out))


def locals_of(values: dict[str, object]) -> dict[str, object]:
    """Map a command's parameters onto :func:`options.build_settings` keywords."""
    skip = {"ctx", "question", "stats", "json_out", "plain"}
    mapped = {k: v for k, v in values.items() if k not in skip}
    mapped["ctx"] = mapped.pop("ctx_size", None)
    mapped["debug"] = mapped.get("debug") or None
    return mapped


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="gemma-chat", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # Typer's usage errors (exit 2) and the like
        print(f"gemma-chat: {exc.format_message()}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    except GemmaChatError as exc:
        if debug:
            raise
        print(f"gemma-chat: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        if debug:
            raise
        print(
            f"gemma-chat: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details)",
            file=sys.stderr,
        )
        code = 1
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
