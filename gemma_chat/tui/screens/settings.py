"""The settings modal (F2): system prompt and sampling parameters."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from rich.text import Text
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch, TextArea

from gemma_chat.config.config_file import describe_validation_error
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.sanitize import visible

FIELDS = (
    ("temperature", "Temperature"),
    ("top_p", "Top-p"),
    ("top_k", "Top-k"),
    ("min_p", "Min-p"),
    ("repeat_penalty", "Repeat penalty"),
    ("max_tokens", "Max tokens"),
    ("seed", "Seed (empty: random)"),
)


@dataclass(frozen=True)
class EditedSettings:
    """What the modal returns."""

    system: str | None
    sampling: Sampling
    repeat_guard: RepeatGuard


class SettingsScreen(ModalScreen[EditedSettings | None]):
    """Edit the system prompt, the sampling parameters and the repetition guard."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="gemma.settings_cancel")]

    def __init__(self, system: str | None, sampling: Sampling, guard: RepeatGuard) -> None:
        super().__init__()
        self._system = system or ""
        self._sampling = sampling
        self._guard = guard

    def compose(self):
        with VerticalScroll(id="settings-body"):
            yield Label("System prompt")
            # A resumed conversation's system prompt is stored text: shown safely.
            yield TextArea(visible(self._system), id="settings-system", soft_wrap=True)
            with Grid(id="settings-grid"):
                for key, label in FIELDS:
                    value = getattr(self._sampling, key)
                    yield Label(label)
                    yield Input("" if value is None else str(value), id=f"settings-{key}")
                yield Label("Repetition guard")
                yield Switch(self._guard.enabled, id="settings-guard")
            # Docked: in a small window the form scrolls, the buttons stay in view.
            with Vertical(id="settings-foot"):
                yield Static("", id="settings-error")
                with Horizontal(id="settings-buttons"):
                    yield Button("Save", variant="primary", id="settings-save")
                    yield Button("Cancel", id="settings-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "settings-save":
            self._save()
        else:
            self.dismiss(None)

    def on_input_submitted(self) -> None:
        self._save()

    def action_cancel(self) -> None:
        """Close without changes."""
        self.dismiss(None)

    def _save(self) -> None:
        values: dict[str, object] = {}
        for key, _ in FIELDS:
            raw = self.query_one(f"#settings-{key}", Input).value.strip()
            values[key] = None if (key == "seed" and raw == "") else raw
        try:
            sampling = Sampling.model_validate(values)
        except ValidationError as exc:
            # The message quotes what was typed: plain text, never markup.
            self.query_one("#settings-error", Static).update(Text(describe_validation_error(exc)))
            return
        guard = self._guard.model_copy(
            update={"enabled": self.query_one("#settings-guard", Switch).value}
        )
        system = self.query_one("#settings-system", TextArea).text.strip() or None
        if system == visible(self._system).strip():
            system = self._system.strip() or None  # unchanged: keep it exactly as stored
        self.dismiss(EditedSettings(system, sampling, guard))
