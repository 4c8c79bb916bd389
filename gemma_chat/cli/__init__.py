"""The ``gemma-chat`` command line (Typer).

``main`` runs Typer in non-standalone mode so that every error, usage errors included,
is one line on stderr with a documented exit code: 1 for runtime errors, 2 for usage
errors, 130 after Ctrl+C. Tracebacks only appear with ``--debug``. An error may quote
untrusted text (a server's message, a model's metadata, a file name), so it is printed
through :func:`~gemma_chat.sanitize.one_line`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from gemma_chat.cli import input_options as inp
from gemma_chat.cli import options as o
from gemma_chat.cli import run_settings
from gemma_chat.cli import structured_options as so
from gemma_chat.cli.doctor import doctor as doctor_command
from gemma_chat.cli.history import history_app
from gemma_chat.cli.models import models_app
from gemma_chat.cli.options import option_given, with_root_options
from gemma_chat.cli.pull import pull as pull_command
from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.sanitize import SafeStream, one_line

app = typer.Typer(
    name="gemma-chat",
    help="Chat with Gemma models running locally from GGUF files.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(history_app, name="history")
app.command("doctor")(doctor_command)
app.add_typer(models_app, name="models")
app.command("pull")(pull_command)

QuestionArg = Annotated[
    str | None,
    typer.Argument(help="The question. Piped stdin is read too (piped text first)."),
]


ThemeOpt = Annotated[
    str | None, typer.Option("--theme", help="TUI theme (remembered when picked in the app).")
]


def _print_version(value: bool) -> None:
    if value:
        from gemma_chat.backend.build_info import version_lines

        print("\n".join(version_lines()))
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the version, llama-cpp-python's version and its build (CPU or GPU).",
    ),
]


@app.callback(invoke_without_command=True)
@o.shared_options
def root(
    ctx: typer.Context,
    options: dict[str, Any],
    theme: ThemeOpt = None,
    resume: o.ResumeOpt = None,
    continue_latest: o.ContinueOpt = False,
    no_save: o.NoSaveOpt = False,
    version: VersionOpt = False,
) -> None:
    """Chat with Gemma in the terminal. With text piped in, answer it like ``ask``."""
    values = settings_values(options)
    values.update(conversation=resume, continue_latest=continue_latest, no_save=no_save)
    if ctx.invoked_subcommand is not None:
        # `gemma-chat --model X ask ...`: options before the command still count.
        ctx.obj = values
        return
    from gemma_chat.cli.inputs import stdin_is_piped

    if stdin_is_piped():
        from gemma_chat.cli.ask import run_ask

        run = run_options(values)
        history = history_options(values, option="--resume")
        raise typer.Exit(run_ask(run_settings.build_settings(**values), None, run, history))
    run_options(values)  # --stats/--json/--plain/--raw only concern answers on stdout
    from gemma_chat.cli.exchange import resume_id

    explicit = frozenset(key for key in o.CONVERSATION_SETTINGS if option_given(values.get(key)))
    settings = run_settings.build_settings(**values)
    if no_save:
        settings = settings.model_copy(update={"save_history": False})
    # Resolved here, so a bad id or a corrupt history is a one-line error, not an app.
    conversation_id = resume_id(continue_latest, resume, settings, explicit)
    if settings.backend == "openai":
        from gemma_chat.config.remote import api_key

        api_key(settings.api_key_env, settings.profile)  # an unset key: one line, no app
    from gemma_chat.tui.app import run_tui

    # For the whole run: llama-cpp-python prints a GGUF's chat template to sys.stderr while
    # loading, and a load still running when the app quits prints after the screen is gone.
    sys.stdout, sys.stderr = SafeStream(sys.stdout), SafeStream(sys.stderr)
    raise typer.Exit(run_tui(settings, theme=theme, resume=conversation_id))


@app.command()
@o.shared_options
def ask(
    ctx: typer.Context,
    options: dict[str, Any],
    question: QuestionArg = None,
    continue_latest: o.ContinueOpt = False,
    conversation: o.ConversationOpt = None,
    from_message: o.FromOpt = None,
    no_save: o.NoSaveOpt = False,
    schema: so.SchemaOpt = None,
    grammar: so.GrammarOpt = None,
    prompt_name: so.PromptNameOpt = None,
    files: inp.FileOpt = None,
    long: inp.LongOpt = None,
) -> None:
    """Answer one question on stdout, streaming, and save the exchange in the history.
    Ctrl+C stops (exit 130)."""
    from gemma_chat.cli.ask import run_ask
    from gemma_chat.cli.saved_prompts import choose_prompt
    from gemma_chat.cli.structured import constraint_from

    values = settings_values(options)
    values.update(conversation=conversation, continue_latest=continue_latest, no_save=no_save)
    values = with_root_options(ctx, values)
    run = run_options(values)
    history = replace(history_options(values), from_message=from_message)
    if from_message is not None and not history.continues:
        raise UsageError(
            "--from needs the conversation the message is in: --conversation ID "
            "(or -c for the most recent one ask started)"
        )
    # All before the model loads: a bad schema or prompt is exit 2 at once.
    saved = choose_prompt(prompt_name)
    constraint = constraint_from(schema, grammar)
    if constraint is None and saved is not None:
        constraint = saved.constraint()
    prompt = None if saved is None else saved.prompt
    if prompt is not None:  # -p is a command-line choice: it wins over a continued chat's
        history = replace(history, explicit=history.explicit | prompt.conversation_settings)
    settings = run_settings.build_settings(prompt=prompt, long_input=long, **values)
    raise typer.Exit(run_ask(settings, question, run, history, constraint, prompt, files or ()))


@app.command()
def prompt(
    ctx: typer.Context,
    question: QuestionArg = None,
    model: o.ModelOpt = None,
    system: o.SystemOpt = None,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
    prompt_name: so.PromptNameOpt = None,
    files: inp.FileOpt = None,
) -> None:
    """Print the exact rendered Gemma prompt, control tokens visible (a template inspector).
    With -p NAME: the saved prompt's system text and template, folded as ``ask`` does."""
    from gemma_chat.cli.prompt import run_prompt
    from gemma_chat.cli.saved_prompts import choose_prompt

    values = with_root_options(
        ctx, {"model": model, "system": system, "json_out": json_out, "debug": debug or None}
    )
    as_json = bool(values.pop("json_out", False))
    keep = ("model", "system", "debug", "ctx", "gpu", "threads", "flash_attn")
    # The inspector tokenizes with a local GGUF's vocabulary, whatever the config's backend.
    local = {k: v for k, v in values.items() if k in keep}
    saved = choose_prompt(prompt_name)
    prompt = None if saved is None else saved.prompt
    # Only the vocabulary is loaded: a bad $GEMMA_CHAT_THREADS does not concern it.
    settings = run_settings.build_settings(
        prompt=prompt, **local, backend="local", threads_env=False
    )
    raise typer.Exit(run_prompt(settings, question, as_json, prompt, files or ()))


@app.command("prompts")
def prompts_command() -> None:
    """List the saved prompts (shipped, in the prompts folder beside the config, and
    [prompts.NAME] in the config)."""
    from gemma_chat.cli.saved_prompts import list_prompts

    raise typer.Exit(list_prompts())


def settings_values(options: dict[str, Any]) -> dict[str, Any]:
    """Map the shared options onto :func:`run_settings.build_settings` keywords (plus the run
    options ``stats``, ``json_out``, ``plain`` and ``raw``)."""
    mapped = dict(options)
    mapped["ctx"] = mapped.pop("ctx_size", None)
    mapped["debug"] = mapped.get("debug") or None
    if mapped.get("model") == "":
        raise UsageError("--model needs a path, a short name or 'demo'")
    return mapped


def run_options(values: dict[str, Any]) -> o.RunOptions:
    """Take the run options out of ``values``.

    Raises:
        UsageError: ``--raw`` with stdout on a terminal.
    """
    keys = ("stats", "json_out", "plain", "raw")
    run = o.RunOptions(*(bool(values.pop(key, False)) for key in keys))
    o.check_raw(run.raw)
    return run


def history_options(values: dict[str, Any], option: str = "--conversation") -> o.HistoryOptions:
    """Take the history options out of ``values`` (which still holds the settings)."""
    explicit = frozenset(key for key in o.CONVERSATION_SETTINGS if option_given(values.get(key)))
    return o.HistoryOptions(
        save=not values.pop("no_save", False),
        continue_latest=bool(values.pop("continue_latest", False)),
        conversation=values.pop("conversation", None),
        explicit=explicit,
        option=option,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if debug:  # llama-cpp-python prints GGUF metadata (a chat template) raw in debug mode
        sys.stderr = SafeStream(sys.stderr)
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        print("gemma-chat: error: stdout is closed; nowhere to write the answer", file=sys.stderr)
        sys.exit(1)
    try:
        check_arguments(args)
        code = app(args=args, prog_name="gemma-chat", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # Typer's usage errors (exit 2) and the like
        print(f"gemma-chat: {one_line(exc.format_message())}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    except GemmaChatError as exc:
        if debug:
            raise
        print(f"gemma-chat: error: {one_line(str(exc))}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # The reader went away (`| head`); point stdout at nothing so exit stays quiet.
        _silence_stdout()
        code = 0
    except OSError as exc:
        if debug:
            raise
        print(f"gemma-chat: error: {one_line(str(exc))}", file=sys.stderr)
        code = 1
    except Exception as exc:
        if debug:
            raise
        print(
            f"gemma-chat: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(run with --debug for details)",
            file=sys.stderr,
        )
        code = 1
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError:
        _silence_stdout()
    sys.exit(code if isinstance(code, int) else 0)


def check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not UTF-8 text, before anything uses it.

    Python hands undecodable bytes in ``argv`` over as lone surrogates
    (``surrogateescape``), which every later encode (the tokenizer, SQLite, a terminal)
    would fail on. Questions, prompts and names are text, so such an argument is a usage
    error; a file name that is not UTF-8 is refused the same way.

    Raises:
        UsageError: An argument holds bytes that are not UTF-8.
    """
    for number, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            try:  # show the bytes the user typed, e.g. \xff
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # a surrogate that did not come from bytes
                shown = arg.encode("utf-8", "backslashreplace").decode("utf-8")
            raise UsageError(
                f"argument {number} is not valid UTF-8 text: {one_line(shown)}"
            ) from None


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
