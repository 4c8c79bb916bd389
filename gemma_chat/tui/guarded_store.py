"""The app's handle on the history store: a failure inside the store never crashes the
app (see :class:`GuardedStore`)."""

from __future__ import annotations

import functools
from typing import Any

from gemma_chat.errors import GemmaChatError
from gemma_chat.history.store import HistoryStore, StoreError
from gemma_chat.sanitize import one_line


class GuardedStore:
    """The app's handle on the history store: whatever goes wrong inside a store call
    (a damaged row, a bug, an error SQLite or Python raises that the store does not
    translate) reaches the app as a :class:`StoreError`, which every caller handles with
    one notification. Nothing from the store can crash the app, so no chat is lost to a
    traceback.

    Attributes are the store's; its methods are wrapped.
    """

    def __init__(self, store: HistoryStore) -> None:
        self.wrapped = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.wrapped, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except GemmaChatError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"the history store failed: {type(exc).__name__}: {one_line(str(exc))}"
                ) from exc

        return call


def guarded(store: HistoryStore | GuardedStore | None) -> GuardedStore | None:
    """``store`` behind the guard (once), or None."""
    if store is None or isinstance(store, GuardedStore):
        return store
    return GuardedStore(store)


def failure_text(exc: Exception) -> str:
    """One line about a failure: the store's own message, or the exception's type and
    text for anything else."""
    if isinstance(exc, GemmaChatError):
        return str(exc)
    return f"{type(exc).__name__}: {one_line(str(exc))}"
