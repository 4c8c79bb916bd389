"""Slash commands and the command palette.

Parsing lives in the core (:mod:`gemma_chat.chat.commands`); :class:`SlashRouter` maps each
command onto the app's actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import SystemCommand

from gemma_chat.chat import commands as slash
from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.errors import UsageError
from gemma_chat.tui.palette import palette_commands
from gemma_chat.tui.theming import ThemeService

if TYPE_CHECKING:
    from textual.screen import Screen

    from gemma_chat.backend.base import Backend
    from gemma_chat.config.settings import RepeatGuard, Sampling, SavedPrompt, Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.structured.constraint import OutputConstraint
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar


BUSY_HINT = "A reply is being generated: wait for it, or press Esc to stop it."


class SettingsRecorder(Protocol):
    """What commands record into the history (:class:`HistoryKeeper`)."""

    @property
    def conversation_id(self) -> int | None: ...
    def record_settings(self) -> None: ...


class Renamer(Protocol):
    """Renames stored conversations (:class:`ConversationSwitcher`)."""

    def rename(self, conversation_id: int | None, title: str = "", current: str = "") -> None: ...


class Reader(Protocol):
    """Attaches files to the next message (:class:`AttachmentTray`)."""

    def add(self, path: str, *, quiet: bool = False) -> bool: ...


class SlashHost(Protocol):
    """What :class:`SlashRouter` uses of the app: its state and the actions commands run."""

    settings: Settings
    conversation: Conversation
    sampling: Sampling
    repeat_guard: RepeatGuard
    constraint: OutputConstraint | None
    saved_prompt: SavedPrompt | None
    engine: Engine | None
    backend: Backend | None
    themes: ThemeService
    history: SettingsRecorder
    switcher: Renamer
    attachments: Reader
    replies: Any  # its compactor: /compact
    _gpu_supported: Callable[[], bool]

    @property
    def prompt(self) -> PromptInput: ...
    @property
    def status(self) -> StatusBar: ...
    @property
    def generating(self) -> bool: ...
    @property
    def remote(self) -> bool: ...
    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None: ...
    def push_screen(self, screen: Screen[Any], callback: Any = None) -> Any: ...
    def copy_to_clipboard(self, text: str) -> None: ...
    def exit(self, *args: Any, **kwargs: Any) -> None: ...
    def schedule_count(self) -> None: ...
    def _start_load(self, settings: Settings) -> None: ...
    def action_help(self) -> None: ...
    async def action_new(self, keep_settings: bool = False) -> None: ...
    async def action_retry(self) -> None: ...
    async def action_edit(self) -> None: ...
    def action_history(self) -> None: ...
    def action_search(self, query: str = "") -> None: ...


class SlashRouter:
    """Runs ``/commands`` typed in the input or picked in the palette."""

    def __init__(self, app: SlashHost) -> None:
        self._app = app

    async def run(self, text: str) -> None:
        """Run a slash command; a bad one gets a one-line notification."""
        try:
            parsed = slash.parse(text)
            await self._dispatch(parsed.command.name, parsed.arg)
        except UsageError as exc:
            self._app.notify(str(exc), severity="error")

    async def _dispatch(self, name: str, arg: str) -> None:
        app = self._app
        if name == "help":
            app.action_help()
        elif name in ("new", "clear"):
            await app.action_new(keep_settings=name == "clear")
        elif name == "system":
            app.conversation.system = arg or None
            app.history.record_settings()
            app.notify("System prompt set." if arg else "System prompt cleared.")
            app.schedule_count()
        elif name == "read":
            app.attachments.add(arg)
        elif name == "compact":
            app.replies.compactor.run()
        elif name == "retry":
            await app.action_retry()
        elif name == "edit":
            await app.action_edit()
        elif name == "gpu":
            self.switch_gpu(slash.parse_gpu(arg))
        elif name in ("temp", "set"):
            key, _, value = (f"temperature {arg}" if name == "temp" else arg).partition(" ")
            if not value.strip():
                self.show_settings(key)
                return
            sampling, guard = slash.apply_setting(
                app.sampling, app.repeat_guard, key, value.strip()
            )
            self.set_params(sampling, guard)
            app.history.record_settings()
            app.notify(f"{key} = {value.strip()}")
        elif name == "settings":
            self.edit_settings()
        elif name == "model":
            if app.generating:
                raise UsageError(BUSY_HINT)
            if not arg:
                self.pick_model()
                return
            app._start_load(app.settings.model_copy(update={"model": arg}))
        elif name == "schema":
            self.set_schema(arg)
        elif name == "prompt":
            self.use_prompt(arg)
        elif name == "history":
            app.action_history()
        elif name == "search":
            app.action_search(arg)
        elif name == "rename":
            if not arg:
                raise UsageError("usage: /rename TITLE")
            app.switcher.rename(app.history.conversation_id, arg)
        elif name == "theme":
            app.themes.select(arg)
        elif name == "copy":
            self.copy("code" if arg.lower() == "code" else "reply")
        elif name == "quit":
            app.exit()

    def show_settings(self, key: str) -> None:
        """``/set KEY`` (``/temp``): the current value; ``/set`` alone: every one.

        Raises:
            UsageError: Unknown key.
        """
        app = self._app
        if key.strip():
            name, value = slash.current_setting(app.sampling, app.repeat_guard, key)
            app.notify(f"{name} = {value}  (/set {name} VALUE changes it)")
            return
        rows = slash.current_settings(app.sampling, app.repeat_guard)
        listing = "\n".join(f"{name} = {value}" for name, value in rows)
        # Keyed: the next listing replaces it, and it may stay long enough to read.
        app.notify(listing, title="Current settings", timeout=12, key="settings")

    def set_schema(self, arg: str) -> None:
        """``/schema @file.json|SCHEMA|off``: constrain the next replies, or stop.

        Raises:
            UsageError: No argument, or a schema that cannot be read or used.
        """
        from gemma_chat.structured.constraint import parse_schema

        app = self._app
        if app.generating:
            raise UsageError(BUSY_HINT)
        if not arg:
            raise UsageError(f"usage: {slash.BY_NAME['schema'].usage}")
        if arg.lower() == "off":
            self.constrain(None)
            app.notify("Replies are free text again.")
            return
        constraint = parse_schema(arg)
        self.constrain(constraint)
        app.notify(
            f"The next replies are JSON that matches the schema ({constraint.label}).",
            markup=False,
        )

    def constrain(self, constraint: OutputConstraint | None) -> None:
        """Use ``constraint`` from the next reply on, and show it in the status bar."""
        app = self._app
        app.constraint = constraint
        if app.engine is not None:
            app.engine.constraint = constraint
        app.status.set_schema(None if constraint is None else constraint.label)

    def use_prompt(self, name: str) -> None:
        """``/prompt NAME``: the saved prompt's system text, sampling and schema for this
        conversation, and its template for each message sent; ``/prompt off`` stops the
        template and the schema.

        Raises:
            UsageError: No such prompt, a malformed one, or a schema it cannot use.
        """
        from gemma_chat.config.prompt_library import failure_lines, find_prompt, load_prompts

        app = self._app
        if app.generating:
            raise UsageError(BUSY_HINT)
        if not name:
            raise UsageError(f"usage: {slash.BY_NAME['prompt'].usage}")
        if name.lower() == "off":
            app.saved_prompt = None
            self.constrain(None)
            app.notify("Saved prompt off: messages go as typed, replies are free text.")
            return
        found, failures = load_prompts(app.settings.prompts)
        entry = find_prompt(name, found, failures)
        constraint = entry.constraint()
        prompt = entry.prompt
        if failures:
            app.notify("\n".join(failure_lines(failures)), severity="warning", markup=False)
        if prompt.system is not None:
            app.conversation.system = prompt.system
        if prompt.sampling:
            sampling = app.sampling.model_copy(update=prompt.sampling)
            self.set_params(sampling, app.repeat_guard)
        app.saved_prompt = prompt
        self.constrain(constraint)
        app.history.record_settings()
        app.schedule_count()
        app.notify(f"Using the saved prompt {name!r}.", markup=False)

    def pick_model(self) -> None:
        """Pick a model from those gemma-chat finds, with their memory plans; the chosen
        one loads in the background and the conversation stays."""
        from gemma_chat.models.menu import model_choices
        from gemma_chat.tui.screens.models import ModelPicker

        app = self._app
        settings = app.settings
        if app.remote:
            app.notify(
                "Models are chosen on the server: /model NAME switches to another model "
                "it serves (its id, see the server's /v1/models).",
                severity="warning",
                timeout=10,
            )
            return
        backend = app.backend
        current = backend.info.path if backend is not None else None
        supported = app._gpu_supported  # called in the worker

        def chosen(model: str | None) -> None:
            if model is None:
                return
            if app.generating:
                app.notify(BUSY_HINT, severity="warning")
                return
            app._start_load(settings.model_copy(update={"model": model}))

        app.push_screen(ModelPicker(lambda: model_choices(settings, current, supported())), chosen)

    def copy(self, what: str = "reply") -> None:
        """Copy the last reply, or its last code block, to the clipboard."""
        app = self._app
        last = next((t for t in reversed(app.conversation.turns) if t.role is Role.MODEL), None)
        if last is None:
            app.notify("No reply to copy yet.")
            return
        text = last.text
        if what == "code":
            blocks = slash.code_blocks(text)
            if not blocks:
                app.notify("The last reply has no code block.")
                return
            text = blocks[-1]
        app.copy_to_clipboard(text)
        app.notify(f"Copied the last {'code block' if what == 'code' else 'reply'}.")

    async def submitted(self, text: str) -> str | None:
        """Enter in the input: a ``/command`` runs here (None comes back); anything else
        is a message to send (``//text`` sends ``/text``)."""
        app = self._app
        if slash.is_command(text.strip()):
            app.prompt.remember(text.strip())
            app.prompt.clear()
            await self.run(text.strip())
            return None
        return text[1:] if text.startswith("//") else text

    def system_commands(self, textual: Iterable[SystemCommand]) -> Iterable[SystemCommand]:
        """Textual's commands, then every slash command. Themes have one entry,
        ``/theme`` (Textual's own "Theme" is left out)."""
        yield from (command for command in textual if command.title != "Theme")
        yield from palette_commands(self._app, self.run)

    def switch_gpu(self, value: bool | int) -> None:
        """Reload with the GPU on (True), off (False), or with a number of layers."""
        app = self._app
        if app.remote:
            app.notify(
                "The model runs on the server: the GPU setting does not apply to a remote "
                "backend (the server decides where it runs).",
                severity="warning",
            )
            return
        if value is not False and value != 0 and not app._gpu_supported():
            from gemma_chat.backend.offload import CUDA_HINT

            app.notify(
                f"This llama.cpp build has no GPU support, so the model stays on the "
                f"CPU. To use an NVIDIA GPU, {CUDA_HINT}",
                severity="warning",
                timeout=15,
            )
            return
        if app.generating:
            app.notify(BUSY_HINT, severity="warning")
            return
        update: dict[str, bool | int] = {"gpu": bool(value)}
        if not isinstance(value, bool):
            update["gpu_layers"] = value
        app._start_load(app.settings.model_copy(update=update))

    def edit_settings(self) -> None:
        """Edit the system prompt and parameters in a form."""
        from gemma_chat.tui.screens.settings import EditedSettings, SettingsScreen

        app = self._app

        def apply(result: EditedSettings | None) -> None:
            if result is not None:
                app.conversation.system = result.system
                self.set_params(result.sampling, result.repeat_guard)
                app.history.record_settings()
                app.notify("Settings saved for this session.")

        app.push_screen(
            SettingsScreen(app.conversation.system, app.sampling, app.repeat_guard), apply
        )

    def set_params(self, sampling: Sampling, guard: RepeatGuard) -> None:
        """Use these parameters from the next reply on."""
        app = self._app
        app.sampling, app.repeat_guard = sampling, guard
        if app.engine is not None:
            app.engine.sampling, app.engine.repeat_guard = sampling, guard
