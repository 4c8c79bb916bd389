"""Resuming fast in the app (an App mixin): the KV state of the conversation being left
is saved, and the saved state of the one opened is restored, so that reopening a long
conversation does not evaluate its whole history again (see :mod:`gemma_chat.backend.kv_cache`).

Saving and restoring block for as long as the state takes to write or read (a gigabyte
for a long Gemma 2 9B conversation), so they run in one background thread, strictly in
order: the save of the conversation being left always comes before the restore of the
next one. A reply waits for the pending state work before it starts, and quitting waits
for the last save (``wait_for_state``) once the UI has closed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gemma_chat.backend.kv_cache import KVStateCache, resume_ids
from gemma_chat.chat.conversation import Conversation
from gemma_chat.errors import GemmaChatError

TOO_LONG = "the conversation cannot fit in the context: a saved state would never be used"
"""Why a conversation too long to fit is neither saved nor restored (nothing tokenized)."""

QUIT_WAIT_S = 10.0
"""How long a save at quit waits for a stopped reply's worker to let go of the model."""


@dataclass(frozen=True)
class StateEvent:
    """What one save or restore did (for the status bar's tooltip and the tests).

    Attributes:
        kind: ``"save"``, ``"restore"`` or ``"forget"``.
        conversation_id: The stored conversation.
        result: Saved (True/False), tokens restored, or whether an entry was removed.
        reason: Why nothing was saved or restored, when that is the result.
    """

    kind: str
    conversation_id: int
    result: bool | int
    reason: str | None


class KVStateSupport:
    """Saves and restores per-conversation KV state in a background thread."""

    settings: Any
    conversation: Conversation
    engine: Any
    model_info: Any
    store: Any
    generating: bool
    conversation_id: int | None

    def setup_state_cache(self) -> None:
        """Create the state cache and its worker thread (started on first use)."""
        self.state_cache = KVStateCache(self.settings.state_cache)
        # Only the UI thread appends here; each job returns its StateEvent as its result.
        self._state_jobs_queued: list[Future[StateEvent]] = []
        self._state_jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-state")
        self._state_pending: Future[Any] | None = None
        self._generation_idle = threading.Event()
        self._generation_idle.set()

    def save_conversation_state(self) -> None:
        """Queue saving the KV state of the conversation on screen (it is being left)."""
        wait_idle = self.generating  # quitting mid-reply: the worker is stopping

        def save(backend: Any, key: str, sha256: str, ids: list[int]) -> bool:
            if wait_idle:
                self._generation_idle.wait(QUIT_WAIT_S)
            return self.state_cache.save(backend, key, sha256, ids)

        self._queue_for_current("save", save)

    def restore_conversation_state(self) -> None:
        """Queue restoring the saved KV state of the conversation on screen."""
        self._queue_for_current("restore", self.state_cache.restore)

    def _queue_for_current(self, kind: str, work: Callable[..., bool | int]) -> None:
        """Queue ``work(backend, key, sha256, ids)`` for the conversation on screen,
        when there is a stored conversation, a loaded model and the cache is on."""
        cid = self.conversation_id
        sha256 = getattr(self.model_info, "sha256", None)
        engine = self.engine
        if (
            not self.settings.state_cache.enabled
            or engine is None
            or self.store is None
            or cid is None
            or sha256 is None
            or not self.conversation.turns
        ):
            return
        try:
            key = self.store.get(cid).uuid
        except GemmaChatError:
            return
        # A snapshot: the conversation on screen changes while the job runs.
        snapshot = Conversation(self.conversation.system, list(self.conversation.turns))
        too_long = _cannot_fit(snapshot, engine.n_ctx)

        def job() -> StateEvent:
            if too_long:
                # Its prompt always drops old turns, so no saved state can match it; and
                # tokenizing megabytes would hold the state thread (and quitting) for
                # minutes. The same bound as the context meter's.
                return StateEvent(kind, cid, 0 if kind == "restore" else False, TOO_LONG)
            ids = resume_ids(engine.template, snapshot)
            return self._state_done(kind, cid, work(engine.backend, key, sha256, ids))

        self._queue_state(job)

    def forget_conversation_state(self, conversation_id: int, key: str) -> None:
        """Queue removing a deleted conversation's saved state."""

        def job() -> StateEvent:
            return self._state_done("forget", conversation_id, self.state_cache.forget(key))

        self._queue_state(job)

    def _queue_state(self, job: Callable[[], StateEvent]) -> None:
        try:
            self._state_pending = self._state_jobs.submit(job)
        except RuntimeError:  # shut down: the app is gone
            self._state_pending = None
        else:
            self._state_jobs_queued.append(self._state_pending)

    def _state_done(self, kind: str, cid: int, result: bool | int) -> StateEvent:
        reason = None if result else self.state_cache.last_reason
        return StateEvent(kind, cid, result, reason)

    @property
    def state_events(self) -> list[StateEvent]:
        """What the finished saves and restores did, in order (for the tests)."""
        return [
            job.result()
            for job in self._state_jobs_queued
            if job.done() and not job.cancelled() and job.exception() is None
        ]

    def wait_for_state(self, timeout: float | None = None) -> None:
        """Block until the queued state work is done (from a worker, or after the UI
        has closed; never on the UI thread while it runs)."""
        pending = self._state_pending
        if pending is not None:
            # The jobs catch their own errors; a timeout only means waiting less.
            with contextlib.suppress(Exception):
                pending.result(timeout)

    def generation_started(self) -> None:
        """A reply is about to be generated (the UI thread)."""
        self._generation_idle.clear()

    def generation_ended(self) -> None:
        """The reply's worker has let go of the model (any thread)."""
        self._generation_idle.set()

    def close_state_cache(self) -> None:
        """Finish the queued work and stop the thread (after the app has quit)."""
        self._state_jobs.shutdown(wait=True)


def _cannot_fit(conversation: Conversation, n_ctx: int) -> bool:
    """Whether the conversation is longer than any ``n_ctx`` tokens can be (measured in
    characters, without tokenizing it)."""
    from gemma_chat.models.loader import MAX_BYTES_PER_TOKEN

    size = len(conversation.system or "") + sum(len(turn.text) for turn in conversation.turns)
    return size > n_ctx * MAX_BYTES_PER_TOKEN
