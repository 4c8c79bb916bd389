"""Streaming a reply in the app (an App mixin): the generate worker, the coalesced text
it posts, and the handlers that feed the reply widget and record the result.

The worker never touches widgets: it posts :class:`ReplyDelta`, then
:class:`ReplyFinished` or :class:`ReplyFailed`; the handlers here update the screen.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from textual import work

from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import TextDelta
from gemma_chat.tui.kv_resume import KVResumeService
from gemma_chat.tui.messages import ReplyDelta, ReplyFailed, ReplyFinished
from gemma_chat.tui.slash import BUSY_HINT
from gemma_chat.tui.widgets.chat_log import ModelReply, UserMessage

GC_FREEZE_S = 0.25
"""How often new objects are frozen while a reply streams (see ``_hold_gc``)."""
GC_RELEASE_S = 2.0
"""How long after a reply the frozen objects are handed back to the collector."""
FRAME_S = 1 / 60
"""The worker posts reply text at most once per frame."""


class ReplyStreaming:
    """Generates replies in a worker and shows them as they stream."""

    engine: Any
    conversation: Conversation
    chat: Any
    prompt: Any
    status: Any
    kv: KVResumeService

    async def _start_reply(self) -> None:
        assert self.engine is not None
        self._reply = await self.chat.add_reply()
        self._cancel = threading.Event()
        self._streamed = 0
        self._stream_started = time.perf_counter()
        self.status.set_speed("…")
        self._hold_gc(True)
        self.kv.generation_started()
        self.generate(self.engine, self.conversation, self._cancel)

    async def action_retry(self) -> None:
        """Regenerate the last reply."""
        if self.generating:
            self.notify(BUSY_HINT, severity="warning")
            return
        if self.engine is None or not self.conversation.turns:
            self.notify("Nothing to retry.")
            return
        if self._loading is not None:
            self.notify("A model is loading: retry once it is loaded.", severity="warning")
            return
        if self.conversation.turns[-1].role is Role.MODEL:
            self.conversation.turns.pop()
            reply = self.chat.last(ModelReply)
            if reply is not None:
                await reply.remove()
            self._record_retry()
        await self._start_reply()

    async def action_edit(self) -> None:
        """Put the last user message back into the input, removing it and its reply."""
        if self.generating:
            self.notify(BUSY_HINT, severity="warning")
            return
        turns = self.conversation.turns
        if not turns:
            self.notify("Nothing to edit.")
            return
        if turns[-1].role is Role.MODEL:
            turns.pop()
            reply = self.chat.last(ModelReply)
            if reply is not None:
                await reply.remove()
        user = turns.pop()
        self._record_edit()
        widget = self.chat.last(UserMessage)
        if widget is not None:
            await widget.remove()
        self.prompt.set_text(user.text)
        self.prompt.focus()

    def _hold_gc(self, streaming: bool) -> None:
        """Keep Python's full garbage collections off the settled widget tree while a
        reply streams: each one walks every widget, and a growing reply triggers them
        again and again (a quarter of the frame time in the TUI benchmark). Objects are
        frozen while streaming and unfrozen a moment after the reply ends, when the
        one full collection that follows costs nothing visible; so nothing leaks."""
        if self._gc_timer is not None:
            self._gc_timer.stop()
            self._gc_timer = None
        if streaming:
            gc.freeze()
            self._gc_timer = self.set_interval(GC_FREEZE_S, lambda: gc.freeze())
        else:
            self._gc_timer = self.set_timer(GC_RELEASE_S, self._release_gc)

    def _release_gc(self) -> None:
        self._gc_timer = None
        gc.unfreeze()

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def generate(self, engine: Engine, conversation: Conversation, cancel: threading.Event) -> None:
        """Worker: stream one reply, posting the text and then the result.

        Deltas are coalesced: text is posted once the UI has taken the previous delta
        and a frame (1/60 s) has passed, and always before the result. A model at human
        speed gets every token posted at once; a fast one gets fewer, bigger deltas
        instead of a queue of thousands of messages that key presses would wait behind.
        """
        pending: list[str] = []
        last_post = 0.0
        taken = self._delta_taken
        taken.set()

        def post() -> None:
            nonlocal last_post
            if pending:
                taken.clear()
                self.post_message(ReplyDelta("".join(pending), tokens=len(pending)))
                pending.clear()
            last_post = time.perf_counter()

        try:
            self.kv.wait()  # a saved KV state being written or restored
            for event in engine.stream(conversation, cancel):
                if isinstance(event, TextDelta):
                    pending.append(event.text)
                    if taken.is_set() and time.perf_counter() - last_post >= FRAME_S:
                        post()
                else:
                    post()
                    self.post_message(ReplyFinished(event))
        except GemmaChatError as exc:
            post()
            self.post_message(ReplyFailed(str(exc)))
        except Exception as exc:
            post()
            self.post_message(ReplyFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.kv.generation_ended()

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        self._delta_taken.set()
        if self._reply is None:
            return
        self._reply.feed(message.text)
        self._streamed += message.tokens
        now = time.perf_counter()
        if now - self._speed_shown > 0.25 and now > self._stream_started:
            self._speed_shown = now
            rate = self._streamed / (now - self._stream_started)
            self.status.set_speed(f"{rate:.1f} tok/s…")

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        done = message.done
        self._hold_gc(False)
        if self._gone():  # quit mid-reply: history_at_exit kept what was shown
            return
        if self._reply is not None:
            self._reply.finish(done.stop_reason)  # it rendered exactly done.text as it streamed
        self.conversation.add_model(done.text, done.stop_reason, done.token_ids)
        self._record_reply(done)
        self.last_done = done
        self._reply, self._cancel = None, None
        stats = done.stats
        ttft = f"TTFT {stats.ttft_s:.2f}s" if stats.ttft_s is not None else "TTFT –"
        speed = f"{stats.tokens_per_s:.1f} tok/s" if stats.tokens_per_s else "– tok/s"
        self.status.set_speed(f"{ttft} · {speed}")
        if stats.dropped_turns:
            self.notify(f"{stats.dropped_turns} old turns were left out to fit the context.")
        if done.error:  # the server failed mid-reply: the partial reply stays
            self.notify(  # type: ignore[attr-defined]
                f"The reply was cut off: {done.error}", severity="error", timeout=15, markup=False
            )
        self.schedule_count()

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        self._hold_gc(False)
        if self._reply is not None:
            await self._reply.remove()
        self._reply, self._cancel = None, None
        pending = self.conversation.pending_user
        if pending is not None:  # nothing typed is lost: it goes back into the input
            self.conversation.turns.pop()
            self._record_failed()
            user = self.chat.last(UserMessage)
            if user is not None:
                await user.remove()
            if not self.prompt.text.strip():
                self.prompt.set_text(pending.text)
        self.status.set_speed("")
        await self.chat.add_notice(f"The reply failed: {message.reason}", error=True)
