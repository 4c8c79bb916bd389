"""The status bar: model, device, context meter, speed.

The model's name comes from its file or GGUF metadata, or from a server: it is shown as
plain text (never markup) through :func:`gemma_chat.sanitize.one_line`."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static

from gemma_chat.sanitize import one_line


class StatusBar(Horizontal):
    """One line of facts about the session. Every field is set by the app."""

    @dataclass(eq=False)  # identity, as for every Message
    class Progress(Message):
        """A worker's progress line (a long input answered part by part)."""

        text: str

    def on_status_bar_progress(self, message: Progress) -> None:
        message.stop()
        self.set_speed(one_line(message.text, 80))

    def compose(self):
        yield Static("loading model…", id="status-model")
        # Its own field: the name gives way (cut with an ellipsis) to a growing speed,
        # never the quantization.
        yield Static("", id="status-quant")
        yield Static("", id="status-schema")
        yield Static("", id="status-device")
        yield Static("", id="status-meter")
        yield Static("", id="status-speed")

    def set_model(self, name: str, quantization: str | None = None) -> None:
        """Show the model name and its quantization."""
        self.query_one("#status-model", Static).update(Text(one_line(name)))
        quant = self.query_one("#status-quant", Static)
        quant.update(Text(one_line(f"· {quantization}")) if quantization else "")
        quant.display = bool(quantization)

    def set_remote(self, host: str, model: str) -> None:
        """Show the server a remote model runs on, and its id there."""
        # The id comes from the server: shown as plain text, never parsed as markup.
        self.query_one("#status-model", Static).update(Text(one_line(f"remote: {host} · {model}")))
        self.query_one("#status-quant", Static).display = False

    def set_schema(self, label: str | None) -> None:
        """Show that replies are constrained (``/schema``), and by what; hide it when not."""
        schema = self.query_one("#status-schema", Static)
        schema.update(Text(one_line(f"schema: {label}")) if label else "")
        schema.display = bool(label)

    def set_device(self, device: str, gpu_layers: int, threads: int) -> None:
        """Show where the model runs."""
        if device == "remote":
            text = "server"
        elif device == "gpu":
            text = f"GPU {gpu_layers} layers"
        else:
            text = f"CPU {threads} threads"
        self.query_one("#status-device", Static).update(text)

    def set_meter(self, used: int, n_ctx: int, *, estimated: bool = False) -> None:
        """Show the context meter: tokens used out of n_ctx (``~`` marks an estimate,
        made without the server's tokenizer)."""
        meter = self.query_one("#status-meter", Static)
        meter.update(f"ctx {'~' if estimated else ''}{used:,}/{n_ctx:,}")
        meter.set_class(used > n_ctx, "-over")
        meter.set_class(n_ctx * 0.8 < used <= n_ctx, "-high")

    def set_speed(self, text: str) -> None:
        """Show time to first token and tokens/s."""
        self.query_one("#status-speed", Static).update(text)
