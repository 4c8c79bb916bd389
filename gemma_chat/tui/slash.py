"""Slash commands and the command palette (an App mixin).

Parsing lives in the core (:mod:`gemma_chat.chat.commands`); this maps each command onto the
app's actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.app import SystemCommand
from textual.screen import Screen

from gemma_chat.chat import commands as slash
from gemma_chat.chat.conversation import Role
from gemma_chat.errors import UsageError
from gemma_chat.tui.theming import ThemeService

BUSY_HINT = "A reply is being generated: wait for it, or press Esc to stop it."


class SlashCommands:
    """Runs ``/commands`` typed in the input or picked in the palette."""

    settings: Any
    conversation: Any
    sampling: Any
    repeat_guard: Any
    prompt: Any
    generating: bool
    engine: Any
    backend: Any
    _gpu_supported: Callable[[], bool]
    _start_load: Callable[[Any], None]
    _record_settings: Callable[[], None]
    themes: ThemeService

    async def run_command(self, text: str) -> None:
        """Run a slash command; a bad one gets a one-line notification."""
        try:
            parsed = slash.parse(text)
            await self._dispatch(parsed.command.name, parsed.arg)
        except UsageError as exc:
            self.notify(str(exc), severity="error")

    async def _dispatch(self, name: str, arg: str) -> None:
        if name == "help":
            self.action_help()
        elif name in ("new", "clear"):
            await self.action_new(keep_settings=name == "clear")
        elif name == "system":
            self.conversation.system = arg or None
            self._record_settings()
            self.notify("System prompt set." if arg else "System prompt cleared.")
            self.schedule_count()
        elif name == "retry":
            await self.action_retry()
        elif name == "edit":
            await self.action_edit()
        elif name == "gpu":
            self.switch_gpu(slash.parse_gpu(arg))
        elif name in ("temp", "set"):
            key, _, value = (f"temperature {arg}" if name == "temp" else arg).partition(" ")
            if not value.strip():
                raise UsageError(f"usage: {slash.BY_NAME[name].usage}")
            sampling, guard = slash.apply_setting(
                self.sampling, self.repeat_guard, key, value.strip()
            )
            self._set_params(sampling, guard)
            self._record_settings()
            self.notify(f"{key} = {value.strip()}")
        elif name == "settings":
            self.action_settings()
        elif name == "model":
            if self.generating:
                raise UsageError(BUSY_HINT)
            if not arg:
                self.action_models()
                return
            self._start_load(self.settings.model_copy(update={"model": arg}))
        elif name == "history":
            self.action_history()
        elif name == "search":
            self.action_search(arg)
        elif name == "rename":
            if not arg:
                raise UsageError("usage: /rename TITLE")
            self.rename_conversation(self.conversation_id, arg)
        elif name == "theme":
            self.themes.select(arg)
        elif name == "copy":
            self.action_copy("code" if arg.lower() == "code" else "reply")
        elif name == "quit":
            self.exit()

    def action_models(self) -> None:
        """Pick a model from those gemma-chat finds, with their memory plans; the chosen
        one loads in the background and the conversation stays."""
        from gemma_chat.models.menu import model_choices
        from gemma_chat.tui.screens.models import ModelPicker

        settings = self.settings  # type: ignore[attr-defined]
        if self.remote:  # type: ignore[attr-defined]
            self.notify(  # type: ignore[attr-defined]
                "Models are chosen on the server: /model NAME switches to another model "
                "it serves (its id, see the server's /v1/models).",
                severity="warning",
                timeout=10,
            )
            return
        backend = self.backend  # type: ignore[attr-defined]
        current = backend.info.path if backend is not None else None
        supported = self._gpu_supported  # type: ignore[attr-defined]  # called in the worker

        def chosen(model: str | None) -> None:
            if model is None:
                return
            if self.generating:  # type: ignore[attr-defined]
                self.notify(BUSY_HINT, severity="warning")  # type: ignore[attr-defined]
                return
            self._start_load(settings.model_copy(update={"model": model}))  # type: ignore[attr-defined]

        self.push_screen(  # type: ignore[attr-defined]
            ModelPicker(lambda: model_choices(settings, current, supported())), chosen
        )

    def action_copy(self, what: str = "reply") -> None:
        """Copy the last reply, or its last code block, to the clipboard."""
        last = next((t for t in reversed(self.conversation.turns) if t.role is Role.MODEL), None)
        if last is None:
            self.notify("No reply to copy yet.")
            return
        text = last.text
        if what == "code":
            blocks = slash.code_blocks(text)
            if not blocks:
                self.notify("The last reply has no code block.")
                return
            text = blocks[-1]
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last {'code block' if what == 'code' else 'reply'}.")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every slash command in the command palette (Ctrl+P)."""
        yield from super().get_system_commands(screen)
        for command in slash.COMMANDS:
            if command.args and command.name not in ("copy", "theme", "search"):
                callback = self._prefill(command)
            else:
                callback = self._runner(f"/{command.name}")
            yield SystemCommand(command.usage, command.help, callback)
        yield SystemCommand("/copy code", "Copy the last code block", self._runner("/copy code"))

    def _runner(self, text: str) -> Callable[[], Any]:
        async def run() -> None:
            await self.run_command(text)

        return run

    def _prefill(self, command: slash.SlashCommand) -> Callable[[], None]:
        def fill() -> None:
            self.prompt.set_text(f"/{command.name} ")
            self.prompt.focus()

        return fill

    def switch_gpu(self, value: bool | int) -> None:
        """Reload with the GPU on (True), off (False), or with a number of layers."""
        if self.remote:
            self.notify(
                "The model runs on the server: the GPU setting does not apply to a remote "
                "backend (the server decides where it runs).",
                severity="warning",
            )
            return
        if value is not False and value != 0 and not self._gpu_supported():
            from gemma_chat.backend.offload import CUDA_HINT

            self.notify(
                f"This llama.cpp build has no GPU support, so the model stays on the "
                f"CPU. To use an NVIDIA GPU, {CUDA_HINT}",
                severity="warning",
                timeout=15,
            )
            return
        if self.generating:
            self.notify(BUSY_HINT, severity="warning")
            return
        update: dict[str, Any] = {"gpu": bool(value)}
        if not isinstance(value, bool):
            update["gpu_layers"] = value
        self._start_load(self.settings.model_copy(update=update))

    def action_settings(self) -> None:
        """Edit the system prompt and parameters in a form."""
        from gemma_chat.tui.screens.settings import EditedSettings, SettingsScreen

        def apply(result: EditedSettings | None) -> None:
            if result is not None:
                self.conversation.system = result.system
                self._set_params(result.sampling, result.repeat_guard)
                self._record_settings()
                self.notify("Settings saved for this session.")

        self.push_screen(
            SettingsScreen(self.conversation.system, self.sampling, self.repeat_guard), apply
        )

    def _set_params(self, sampling: Any, guard: Any) -> None:
        self.sampling, self.repeat_guard = sampling, guard
        if self.engine is not None:
            self.engine.sampling, self.engine.repeat_guard = sampling, guard
