"""The history side of one ``ask`` run: which conversation it continues, with which
settings, and saving the exchange as it happens.

The store is opened and the conversation read *before* the model loads, so a corrupt
database or an unknown id fails in a moment rather than after a long load.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gemma_chat.backend.kv_cache import KVStateCache, resume_ids
from gemma_chat.chat.conversation import Conversation
from gemma_chat.cli.options import HistoryOptions
from gemma_chat.config.settings import SAMPLING_KEYS, Settings
from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone
from gemma_chat.history.recording import params_of, restore_params
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import (
    ConversationRecord,
    HistoryStore,
    MessageRecord,
    to_conversation,
)
from gemma_chat.models.resolve import ModelInfo

if TYPE_CHECKING:
    from gemma_chat.models.loader import RemoteModelInfo


def find_conversation(
    store: HistoryStore,
    continue_latest: bool,
    conversation_id: int | None,
    option: str,
    origin: str | None = None,
) -> ConversationRecord | None:
    """The conversation ``--continue`` or ``--conversation``/``--resume ID`` names.

    ``ask -c`` (``origin="ask"``) continues the most recent conversation that ``ask``
    started, never a chat from the app; the app's ``--continue`` opens the most recent of
    any. ``--conversation ID`` reaches any conversation.

    Returns:
        The record, or None when neither was given.

    Raises:
        UsageError: Both were given, or the history is empty.
        NotFound: No conversation has the id.
    """
    if continue_latest and conversation_id is not None:
        raise UsageError(f"--continue and {option} cannot be used together")
    if conversation_id is not None:
        return store.get(conversation_id)
    if not continue_latest:
        return None
    record = store.latest(origin=origin)
    if record is None and origin is not None and store.latest() is not None:
        raise UsageError(
            f"no conversation started by {origin} to continue ({option} ID continues any; "
            "'gemma-chat history list' shows them)"
        )
    if record is None:
        raise UsageError("the history is empty: there is no conversation to continue")
    return record


def resume_id(
    continue_latest: bool,
    conversation_id: int | None,
    settings: Settings | None = None,
    explicit: frozenset[str] = frozenset(),
) -> int | None:
    """The id of the conversation the TUI should open (``--resume ID``/``--continue``).

    Options given explicitly on the command line (``explicit``) win over the stored
    ones, as with ``ask -c``: they are stored with the conversation, which the app then
    restores.

    Raises:
        UsageError: As :func:`find_conversation`.
        StoreError: The history cannot be read.
    """
    if not continue_latest and conversation_id is None:
        return None
    with HistoryStore() as store:
        record = find_conversation(store, continue_latest, conversation_id, "--resume")
        if record is None:
            return None
        if settings is not None and explicit and settings.save_history:
            merged = continued_settings(settings, record, explicit)
            params = params_of(merged.sampling, merged.repeat_guard)
            if (merged.system, params) != (record.system, record.params):
                store.set_settings(record.id, merged.system, params)
    return record.id


def continued_settings(
    settings: Settings, record: ConversationRecord, explicit: frozenset[str]
) -> Settings:
    """The settings for continuing ``record``: its stored system prompt and parameters,
    except where the command line gave a value explicitly (those win)."""
    sampling, guard = restore_params(record, settings.sampling, settings.repeat_guard)
    given = {key: getattr(settings.sampling, key) for key in SAMPLING_KEYS if key in explicit}
    sampling = sampling.model_copy(update=given)
    if "no_repeat_guard" in explicit:
        guard = guard.model_copy(update={"enabled": settings.repeat_guard.enabled})
    system = settings.system if "system" in explicit else record.system
    return settings.model_copy(
        update={"sampling": sampling, "repeat_guard": guard, "system": system}
    )


@dataclass
class Exchange:
    """One ``ask`` run's conversation and its recording.

    Attributes:
        settings: The settings to answer with (a continued conversation's own).
        record: The continued conversation, if any.
        messages: Its stored messages.
        store: The open store; None when nothing is read or saved.
        session: Records the exchange (see :class:`ConversationSession`); None with
            ``--no-save``.
    """

    settings: Settings
    record: ConversationRecord | None = None
    messages: list[MessageRecord] = field(default_factory=list)
    store: HistoryStore | None = None
    session: ConversationSession | None = None
    user_meta: dict[str, Any] | None = None
    """Kept with the user message when it is saved (the attached files)."""
    viewed_before: int | None = None
    """With ``--from``: the end of the branch viewed before, viewed again if the new
    question is taken back (else the branch viewed would end at MSG)."""
    question_id: int | None = None
    """The stored id of the new question (None until saved, or not saved)."""
    reply_id: int | None = None
    """The stored id of the reply (None until saved, or not saved)."""
    _conversation: Conversation | None = None

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation the exchange is saved in (None when not saved)."""
        return None if self.session is None else self.session.conversation_id

    def conversation(self, info: ModelInfo | RemoteModelInfo, message: str) -> Conversation:
        """The conversation to answer, ending with ``message``, which is saved at once
        (before generating, so that it survives a crash)."""
        if self.record is None:
            conversation = Conversation(system=self.settings.system)
        else:
            conversation = to_conversation(self.record, self.messages, info.sha256)
            conversation.system = self.settings.system
        pending = conversation.pending_user
        if pending is not None:
            # An earlier run died before its reply: answer both messages together, as
            # they will be read back (see to_conversation); only the new one is stored.
            pending.text += "\n\n" + message
        else:
            conversation.add_user(message)
        self._conversation = conversation
        if self.session is None:
            return conversation
        self._save_settings(self.session)
        params = params_of(self.settings.sampling, self.settings.repeat_guard)
        self.question_id = self.session.record_user(
            conversation, params, message if pending else None, self.user_meta
        )
        return conversation

    def _save_settings(self, session: ConversationSession) -> None:
        """Store settings given on this command line for a continued conversation."""
        if self.record is None:
            return
        system = self.settings.system
        params = params_of(self.settings.sampling, self.settings.repeat_guard)
        if (system, params) != (self.record.system, self.record.params):
            session.record_settings(system, params)

    def reply(
        self,
        done: ReplyDone,
        info: ModelInfo | RemoteModelInfo,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Save the finished or stopped reply, linked to its question (``meta``: what
        else to keep with it, such as a long input's notes)."""
        if self.session is not None and self._conversation is not None:
            self.reply_id = self.session.record_reply(
                done,
                self._conversation,
                model=info.display_name,
                model_sha256=info.sha256,
                meta=meta,
            )

    def unsend(self) -> None:
        """Take back the saved user message when it could not be answered at all (it
        does not fit the context): kept, it would break every later continuation. A
        conversation this run created goes away entirely."""
        if self.session is None or self._conversation is None:
            return
        self.session.unsend(len(self._conversation.turns) - 1)
        cid = self.session.conversation_id
        if self.viewed_before is not None and self.store is not None and cid is not None:
            with suppress(GemmaChatError):  # the error being handled matters more
                self.store.view(cid, self.viewed_before)
        self.session.close()

    def restore_state(
        self, engine: Engine, conversation: Conversation, info: ModelInfo | RemoteModelInfo
    ) -> int:
        """Load a continued conversation's saved KV state, so that only the new message
        is evaluated (see :mod:`gemma_chat.backend.kv_cache`).

        Returns:
            The prompt tokens the state covers (0: the prompt is evaluated as usual).
        """
        if self.record is None or not self.settings.state_cache.enabled:
            return 0
        if info.sha256 is None:  # a remote model (or an unknown file): no state to load
            return 0
        cache = KVStateCache(self.settings.state_cache)
        ids = resume_ids(engine.template, conversation)
        return cache.restore(engine.backend, self.record.uuid, info.sha256, ids)

    def save_state(
        self, engine: Engine, conversation: Conversation, info: ModelInfo | RemoteModelInfo
    ) -> bool:
        """Save the KV state after the reply (added to ``conversation``), for the next
        ``--continue``. Short conversations and unsaved ones are skipped."""
        if not self.settings.state_cache.enabled or info.sha256 is None:
            return False  # a remote model keeps its cache on the server
        cid = self.conversation_id
        if cid is None:
            return False
        key = self.record.uuid if self.record is not None else None
        if key is None and self.store is not None:
            key = self.store.get(cid).uuid
        cache = KVStateCache(self.settings.state_cache)
        ids = resume_ids(engine.template, conversation)
        return cache.save(engine.backend, key, info.sha256, ids)

    def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()


def branch_of(
    store: HistoryStore, record: ConversationRecord, from_message: int | None
) -> list[MessageRecord]:
    """The messages a continuation starts from: the branch last viewed, or with
    ``--from MSG`` the branch from the start to that message (the new question is then
    stored after it, on a branch of its own; after a question, it joins it).

    Raises:
        UsageError: ``from_message`` is not a message of the conversation.
    """
    if from_message is None:
        return store.messages(record.id)
    messages = store.messages(record.id, leaf=from_message)
    if not messages:
        raise UsageError(
            f"there is no message {from_message} in conversation {record.id} "
            f"(see: gemma-chat history show {record.id} --tree)"
        )
    return messages


def open_exchange(settings: Settings, options: HistoryOptions) -> Exchange:
    """Open the store (when saving or continuing) and read the conversation to continue.

    Raises:
        CorruptStore: The history file is damaged (one line, exit 1).
        UsageError: Bad ``--continue``/``--conversation`` use, or an unknown id.
    """
    save = options.save and settings.save_history
    if not save and not options.continues:
        return Exchange(settings)  # --no-save: the store is never opened
    store = HistoryStore()
    try:
        record = find_conversation(
            store, options.continue_latest, options.conversation, options.option, origin="ask"
        )
        messages = [] if record is None else branch_of(store, record, options.from_message)
    except BaseException:
        store.close()
        raise
    if record is not None:
        settings = continued_settings(settings, record, options.explicit)
    session = None
    if save:
        session = ConversationSession(
            store, None if record is None else record.id, messages, origin="ask"
        )
    exchange = Exchange(settings, record, messages, store, session)
    if record is not None and options.from_message is not None:
        exchange.viewed_before = record.active_id
    return exchange
