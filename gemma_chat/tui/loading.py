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
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

from gemma_chat.config.settings import Settings
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine
from gemma_chat.tui.messages import ModelLoaded, ModelLoadFailed, Notice

if TYPE_CHECKING:
    from textual.worker import Worker

    from gemma_chat.backend.base import Backend
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.config.settings import RepeatGuard, Sampling
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo
    from gemma_chat.structured.constraint import OutputConstraint
    from gemma_chat.tui.widgets.chat_log import ChatLog
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar

Loader = Callable[[Settings, Callable[[str], None]], tuple[Any, Any]]
"""Loads a model: ``(settings, notify) -> (model info, backend)`` (tests pass scripted
ones; the info is None for a scripted model)."""

WARNING_S = 6
"""How long a loader's warning stays on screen."""
PROGRESS_S = 120
"""How long a progress notice may stay (it is cleared as soon as the load ends)."""
LOAD_PROGRESS = "load-progress"
"""The key of a loader's progress notice ("assembling the demo model…"), cleared once the
load has ended."""
READY_PLACEHOLDER = "Message Gemma · Enter sends · Ctrl+J new line · F1 help"
"""The input's hint once a model is loaded."""


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


LOADING_PLACEHOLDER = "Loading the model… type now: Enter queues your message"
"""The input's hint until a model is loaded."""


def default_gpu_supported() -> bool:
    """Whether the installed llama.cpp build can offload to a GPU."""
    from gemma_chat.backend.local import gpu_offload_supported

    return gpu_offload_supported()


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


class LoadedHistory(Protocol):
    """What a load tells the history (:class:`HistoryKeeper`)."""

    def model_loaded(self) -> None: ...
    def restore_state(self) -> None: ...


class LoadHost(Protocol):
    """What :class:`ModelLoading` uses of the app: the state a load replaces, and the
    widgets that show it."""

    settings: Settings
    conversation: Conversation
    sampling: Sampling
    repeat_guard: RepeatGuard
    constraint: OutputConstraint | None
    engine: Engine | None
    backend: Backend | None
    model_info: ModelInfo | RemoteModelInfo | None
    history: LoadedHistory

    @property
    def chat(self) -> ChatLog: ...
    @property
    def prompt(self) -> PromptInput: ...
    @property
    def status(self) -> StatusBar: ...
    @property
    def remote(self) -> bool: ...
    def _gone(self) -> bool: ...
    def schedule_count(self) -> None: ...
    def post_message(self, message: Message) -> bool: ...
    def run_worker(
        self,
        work: Callable[[], None],
        name: str | None = "",
        group: str = "default",
        description: str = "",
        exit_on_error: bool = True,
        start: bool = True,
        exclusive: bool = False,
        thread: bool = False,
    ) -> Worker[None]: ...


class ModelLoading:
    """Starts loads in a worker, knows which one is current, and puts a loaded model in
    place (or keeps the working one when a load fails).

    Args:
        app: The app the worker runs in and posts to.
        loader: How to load (None: :func:`default_loader`, cancelled on quit).
    """

    def __init__(self, app: LoadHost, loader: Loader | None = None) -> None:
        self._app = app
        self.quitting = threading.Event()
        self._loader = loader or functools.partial(default_loader, cancel=self.quitting)
        self.loading: Settings | None = None
        """The settings of the load in progress (None when none is)."""

    def start(self, settings: Settings) -> None:
        """Load the model ``settings`` name in the background (a newer load wins).

        The app's settings change only once the load succeeds: a model that fails to
        load must not replace the working one (nor its settings, which Ctrl+G reloads).
        """
        if settings.backend == "openai":
            self._app.status.set_model(f"connecting to {settings.base_url}…")
        else:
            self._app.status.set_model(f"loading {settings.model or 'the demo model'}…")
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

    def loaded(self, message: ModelLoaded) -> None:
        """A load succeeded: the new model replaces the working one (if it is current)."""
        app = self._app
        if app._gone() or not self.is_current(message.settings):
            message.backend.close()  # quitting, or a load that a newer one overtook
            return
        self.finished()
        assert message.settings is not None
        app.settings = message.settings
        if app.backend is not None and app.backend is not message.backend:
            app.backend.close()
        app.backend, app.model_info = message.backend, message.info
        app.engine = Engine(message.backend, app.sampling, app.repeat_guard, app.constraint)
        for turn in app.conversation.turns:
            turn.token_ids = None  # ids of another load's vocabulary or KV cache
        app.history.model_loaded()
        app.history.restore_state()
        self.show_model()
        app.prompt.placeholder = READY_PLACEHOLDER
        app.schedule_count()

    async def failed(self, message: ModelLoadFailed) -> None:
        """A load failed: the working model, if any, stays; the reason is shown."""
        app = self._app
        if app._gone() or not self.is_current(message.settings):
            return
        self.finished()
        assert message.settings is not None
        working = app.backend.info.model if app.backend is not None else None
        failure = load_failure(message.settings, message.reason, working)
        if working is not None:
            self.show_model()  # the working model stays loaded, with its settings
        else:
            app.settings = message.settings  # nothing was working: nothing to keep
            app.status.set_model(failure.status)
            app.prompt.placeholder = failure.placeholder
        await app.chat.add_notice(failure.notice, error=True)

    def show_model(self) -> None:
        """Show the loaded model and its device in the status bar."""
        app = self._app
        assert app.backend is not None
        info = app.backend.info
        if app.remote:
            app.status.set_remote(getattr(app.model_info, "host", info.path), info.model)
        else:
            app.status.set_model(info.model, getattr(app.model_info, "quantization", None))
        app.chat.speaker = info.model  # the label of new replies
        app.status.set_device(info.device, info.gpu_layers, info.threads)

    def _load(self, settings: Settings) -> None:
        """Worker: load, then post the outcome (and each warning) to the app."""

        def warn(text: str) -> None:
            if text.startswith("warning:"):
                self._post(Notice(text, "warning", WARNING_S))
            else:  # progress: it holds until the load ends
                self._post(Notice(text, "information", PROGRESS_S, key=LOAD_PROGRESS))

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
