"""Loading a model for the app (a collaborator the app owns): the load runs in a thread
worker that only posts messages (:class:`ModelLoaded`, :class:`ModelLoadFailed`, and a
:class:`Notice` for each of the loader's warnings); the app's handlers change state.

A load that a newer one overtook, or that ends while the app quits, is recognised by
its settings (``is_current``). Quitting sets ``quitting``: a load still waiting for a
remote server gives up at once instead of keeping the process for a timeout.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.message import Message

from gemma_chat.config.settings import Settings
from gemma_chat.errors import GemmaChatError
from gemma_chat.tui.messages import ModelLoaded, ModelLoadFailed, Notice

Loader = Callable[[Settings, Callable[[str], None]], tuple[Any, Any]]
"""Loads a model: ``(settings, notify) -> (model info, backend)`` (tests pass scripted
ones; the info is None for a scripted model)."""

WARNING_S = 10
"""How long a loader's warning stays on screen."""


def default_loader(
    settings: Settings,
    notify: Callable[[str], None],
    *,
    cancel: threading.Event | None = None,
) -> tuple[Any, Any]:
    """Probe and load the model the settings name (stdout/stderr stay open: the UI owns
    the terminal while llama.cpp loads). ``cancel`` (set when the app quits) stops
    waiting for a remote server at once."""
    from gemma_chat.models.loader import load_backend

    return load_backend(settings, notify, keep_stderr=True, cancel=cancel)


@dataclass(frozen=True)
class LoadFailure:
    """What the app shows when a load fails.

    Attributes:
        status: The status bar's model text when no model is working.
        placeholder: The input's hint then.
        notice: The error shown in the chat.
    """

    status: str
    placeholder: str
    notice: str


def load_failure(settings: Settings, reason: str, working: str | None) -> LoadFailure:
    """What to show when the load of ``settings`` failed for ``reason``; ``working``
    names the model still loaded (only a successful load replaces it), if any."""
    remote = settings.backend == "openai"
    if working is not None:
        what = "connect to" if remote else "load"
        return LoadFailure(
            "", "", f"Could not {what} the new model: {reason}\nStill using {working}."
        )
    if remote:
        return LoadFailure(
            "not connected",
            "Not connected: /model NAME tries the server again",
            f"Could not use the server: {reason}\n"
            "Try again with /model NAME (a model id on the server), or quit with Ctrl+Q.",
        )
    return LoadFailure(
        "no model loaded",
        "No model loaded: /model PATH loads one",
        f"Could not load the model: {reason}\nLoad another with /model PATH, or quit with Ctrl+Q.",
    )


class ModelLoading:
    """Starts loads in a worker and knows which one is current.

    Args:
        app: The app the worker runs in and posts to.
        loader: How to load (None: :func:`default_loader`, cancelled on quit).
    """

    def __init__(self, app: App[None], loader: Loader | None = None) -> None:
        self._app = app
        self.quitting = threading.Event()
        self._loader = loader or functools.partial(default_loader, cancel=self.quitting)
        self.loading: Settings | None = None
        """The settings of the load in progress (None when none is)."""

    def start(self, settings: Settings) -> None:
        """Load the model ``settings`` name in the background (a newer load wins)."""
        self.loading = settings
        self._app.run_worker(
            functools.partial(self._load, settings),
            name="load_model",
            group="model",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def is_current(self, settings: Settings | None) -> bool:
        """Whether a load's outcome is the one awaited (not overtaken, not quitting)."""
        return settings is not None and settings is self.loading

    def finished(self) -> None:
        """The current load's outcome was handled."""
        self.loading = None

    def quit(self) -> None:
        """The app is quitting: a load waiting for a server stops waiting."""
        self.quitting.set()

    def _load(self, settings: Settings) -> None:
        """Worker: load, then post the outcome (and each warning) to the app."""

        def warn(text: str) -> None:
            self._post(Notice(text, "warning", WARNING_S))

        try:
            info, backend = self._loader(settings, warn)
        except GemmaChatError as exc:
            self._post(ModelLoadFailed(str(exc), settings))
        except Exception as exc:
            self._post(ModelLoadFailed(f"{type(exc).__name__}: {exc}", settings))
        else:
            if not self._post(ModelLoaded(info, backend, settings)):
                backend.close()  # the app is gone: nobody else will close it

    def _post(self, message: Message) -> bool:
        return self._app.post_message(message)
