"""Resuming fast in the app (a collaborator the app owns): the KV state of the
conversation being left is saved, and the saved state of the one opened is restored, so
that reopening a long conversation does not evaluate its whole history again (see
:mod:`gemma_chat.backend.kv_cache`).

Saving and restoring block for as long as the state takes to write or read (a gigabyte
for a long Gemma 2 9B conversation), so they run in one background thread, strictly in
order: the save of the conversation being left always comes before the restore of the
next one. A reply waits for the pending state work before it starts, and quitting waits
for the last save (``KVResumeService.wait``) once the UI has closed.
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
from gemma_chat.config.settings import KVCacheSettings
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine

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


@dataclass(frozen=True)
class KVTarget:
    """The conversation on screen, as a save or restore needs it (a snapshot: the one
    on screen changes while the job runs).

    Attributes:
        conversation_id: The stored conversation.
        key: Its uuid, which names the saved state.
        sha256: The loaded model file's (a state belongs to one model).
        engine: The loaded model.
        snapshot: The conversation's turns at the time.
    """

    conversation_id: int
    key: str
    sha256: str
    engine: Engine
    snapshot: Conversation


def kv_target(
    engine: Engine | None,
    store: Any,
    conversation_id: int | None,
    sha256: str | None,
    conversation: Conversation,
) -> KVTarget | None:
    """The target for the conversation on screen; None when there is nothing to save or
    restore (no stored conversation, no model, a remote model, no turns)."""
    if engine is None or engine.backend.is_remote:
        return None
    if store is None or conversation_id is None or sha256 is None:
        return None
    if not conversation.turns:
        return None
    try:
        key = store.get(conversation_id).uuid
    except GemmaChatError:
        return None
    snapshot = Conversation(conversation.system, list(conversation.turns))
    return KVTarget(conversation_id, key, sha256, engine, snapshot)


class KVResumeService:
    """Saves and restores per-conversation KV state in one background thread.

    Args:
        settings: The ``[state_cache]`` settings.
    """

    def __init__(self, settings: KVCacheSettings) -> None:
        self.settings = settings
        self.cache = KVStateCache(settings)
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-state")
        # Only the UI thread appends here; each job returns its StateEvent as its result.
        self._queued: list[Future[StateEvent]] = []
        self._pending: Future[StateEvent] | None = None
        self._generation_idle = threading.Event()
        self._generation_idle.set()

    def save(self, target: KVTarget | None, *, generating: bool = False) -> None:
        """Queue saving the KV state of the conversation being left (``generating``:
        quitting mid-reply, so the save first waits for the worker to let go)."""

        def save(backend: Any, key: str, sha256: str, ids: list[int]) -> bool:
            if generating:
                self._generation_idle.wait(QUIT_WAIT_S)
            return self.cache.save(backend, key, sha256, ids)

        self._queue_for(target, "save", save)

    def restore(self, target: KVTarget | None) -> None:
        """Queue restoring the saved KV state of the conversation opened."""
        self._queue_for(target, "restore", self.cache.restore)

    def _queue_for(
        self, target: KVTarget | None, kind: str, work: Callable[..., bool | int]
    ) -> None:
        """Queue ``work(backend, key, sha256, ids)`` for ``target``, when the cache is on."""
        if target is None or not self.settings.enabled:
            return
        engine, snapshot, cid = target.engine, target.snapshot, target.conversation_id
        too_long = _cannot_fit(snapshot, engine.n_ctx)

        def job() -> StateEvent:
            if too_long:
                # Its prompt always drops old turns, so no saved state can match it; and
                # tokenizing megabytes would hold the state thread (and quitting) for
                # minutes. The same bound as the context meter's.
                return StateEvent(kind, cid, 0 if kind == "restore" else False, TOO_LONG)
            ids = resume_ids(engine.template, snapshot)
            return self._done(kind, cid, work(engine.backend, target.key, target.sha256, ids))

        self._queue(job)

    def forget(self, conversation_id: int, key: str) -> None:
        """Queue removing a deleted conversation's saved state."""

        def job() -> StateEvent:
            return self._done("forget", conversation_id, self.cache.forget(key))

        self._queue(job)

    def _queue(self, job: Callable[[], StateEvent]) -> None:
        try:
            self._pending = self._jobs.submit(job)
        except RuntimeError:  # shut down: the app is gone
            self._pending = None
        else:
            self._queued.append(self._pending)

    def _done(self, kind: str, cid: int, result: bool | int) -> StateEvent:
        reason = None if result else self.cache.last_reason
        return StateEvent(kind, cid, result, reason)

    @property
    def events(self) -> list[StateEvent]:
        """What the finished saves and restores did, in order (for the tests)."""
        return [
            job.result()
            for job in self._queued
            if job.done() and not job.cancelled() and job.exception() is None
        ]

    def wait(self, timeout: float | None = None) -> None:
        """Block until the queued state work is done (from a worker, or after the UI
        has closed; never on the UI thread while it runs)."""
        pending = self._pending
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

    def close(self) -> None:
        """Finish the queued work and stop the thread (after the app has quit)."""
        self._jobs.shutdown(wait=True)


def _cannot_fit(conversation: Conversation, n_ctx: int) -> bool:
    """Whether the conversation is longer than any ``n_ctx`` tokens can be (measured in
    characters, without tokenizing it)."""
    from gemma_chat.models.loader import MAX_BYTES_PER_TOKEN

    size = len(conversation.system or "") + sum(len(turn.text) for turn in conversation.turns)
    return size > n_ctx * MAX_BYTES_PER_TOKEN
