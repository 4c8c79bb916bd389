"""The turn engine: one model reply, streamed, with Gemma's stop rules.

The engine picks the source for its backend (:mod:`gemma_chat.generation.sources`: the
Gemma template as token ids for a model that runs here, or as text for a server, as
``backend.is_remote`` says) and runs the one reply loop over it
(:mod:`gemma_chat.generation.loop`, where the stop rules are). The same stop reasons come
out of both: ``end_of_turn``, ``new_turn``, ``max_tokens``, ``context_full``,
``repetition``, ``cancelled``, and ``failed`` when a server's connection breaks mid-reply.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gemma_chat.backend.base import Backend
from gemma_chat.chat.conversation import Conversation, Role, Turn
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.generation.loop import run_reply
from gemma_chat.generation.server_source import ServerTokenSource
from gemma_chat.generation.sources import PieceSource, source_for
from gemma_chat.generation.text_counts import count_text_tokens
from gemma_chat.structured.constraint import OutputConstraint


@dataclass
class Engine:
    """Generates Gemma replies on a backend.

    Attributes:
        backend: The loaded model.
        sampling: Sampling parameters (read at the start of every reply).
        repeat_guard: Repetition-guard settings.
        constraint: A JSON Schema or grammar the replies must follow (None: free text).
    """

    backend: Backend
    sampling: Sampling = field(default_factory=Sampling)
    repeat_guard: RepeatGuard = field(default_factory=RepeatGuard)
    constraint: OutputConstraint | None = None

    def __post_init__(self) -> None:
        backend = self.backend
        self.template: GemmaTemplate | None = (
            None if backend.is_remote else GemmaTemplate(backend.tokenizer)
        )
        """The token template; None for a remote backend (the server tokenizes)."""
        self.last_seed: int | None = None
        """The seed of the reply being (or last) generated."""

    @property
    def n_ctx(self) -> int:
        """The context window of the loaded model."""
        return self.backend.info.n_ctx

    def stream(
        self, conversation: Conversation, cancel: threading.Event | None = None
    ) -> Iterator[TextDelta | ReplyDone]:
        """Generate the reply to the conversation's pending user turn.

        Yields :class:`TextDelta` events, then exactly one :class:`ReplyDone`. The
        conversation is not changed; see :meth:`reply`.

        Raises:
            ContextError: The newest message cannot fit into the context.
            RemoteError: A remote server failed before sending any text.
        """
        sampling, repeat_guard = self.sampling, self.repeat_guard
        backend, constraint = self.backend, self.constraint
        source: PieceSource
        if getattr(backend, "llama_server", None) is not None:  # ids in, ids out
            source = ServerTokenSource(backend, conversation, sampling, constraint)
        else:
            source = source_for(backend, conversation, sampling, self.template, constraint)
        for event in run_reply(
            source,
            sampling=sampling,
            repeat_guard=repeat_guard,
            n_ctx=self.n_ctx,
            seed=self._seed(),
            cancel=cancel,
        ):
            yield self._with_speculation(event) if isinstance(event, ReplyDone) else event

    def _with_speculation(self, done: ReplyDone) -> ReplyDone:
        """``done`` with what speculative decoding did (a backend that speculates keeps it
        in ``last_speculation``)."""
        spec = getattr(self.backend, "last_speculation", None)
        if spec is None or spec.mode == "off":
            return done
        stats = dataclasses.replace(
            done.stats,
            speculative=spec.mode,
            drafted_tokens=spec.drafted,
            accepted_tokens=spec.accepted,
        )
        return dataclasses.replace(done, stats=stats)

    def reply(
        self,
        conversation: Conversation,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ReplyDone:
        """Generate the reply, pass each delta to ``on_text``, and append it to the
        conversation."""
        done: ReplyDone | None = None
        for event in self.stream(conversation, cancel):
            if isinstance(event, TextDelta):
                if on_text is not None:
                    on_text(event.text)
            else:
                done = event
        assert done is not None
        conversation.add_model(done.text, done.stop_reason, done.token_ids)
        return done

    def count_tokens(self, conversation: Conversation, draft: str = "") -> int:
        """Exact tokens the conversation (plus a draft message) takes in the context.

        Counts what the next prompt would hold before any turns are dropped: BOS, every
        turn, and the generation prompt when a user message is pending. This is the
        context meter's number. For a remote backend it is an estimate (see
        :func:`gemma_chat.generation.text_counts.estimate_tokens`).
        """
        template = self.template
        if template is None:  # a remote backend: no tokenizer here
            return count_text_tokens(conversation, draft)
        view, system = conversation.prompt_view()  # a summary stands for compacted turns
        turns = list(view)
        if draft.strip() and conversation.pending_user is None:
            turns.append(Turn(Role.USER, draft))
        count = len(template.render(turns, system))
        if not turns or turns[-1].role is not Role.USER:
            count -= len(template.generation_prompt())  # no reply is pending
        return count

    def _seed(self) -> int:
        seed = self.sampling.seed
        self.last_seed = seed if seed is not None else random.randrange(2**31)
        return self.last_seed
