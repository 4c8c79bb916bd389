"""Benchmark: how fast the TUI renders a streamed reply, and whether frames freeze.

A ScriptedBackend on the demo model's real vocabulary replays a ~5,000-token Markdown
reply (paragraphs, lists, fenced code; ``--tokens 20000`` is the long case) with no delay,
so the model costs nothing and the UI is the bottleneck. The app runs headless (80x24)
and is instrumented by a subclass; nothing in gemma_chat/ is changed. Each round
measures, in one process:

1. The engine alone: ``engine.stream`` iterated on the same script, tokens (text deltas)
   per second from the first delta to ``ReplyDone``.
2. The UI: tokens handled per second (one per ``ReplyDelta`` message handled; a
   coalesced delta counts the tokens it carries), from the first handled delta to the
   end of the ``ReplyFinished`` handler (the whole reply rendered; with the prototype
   renderer, to the end of its rendering), checking that the conversation and the reply
   widget end with the complete text. While it streams:
   * loop lag: a ``set_interval(1/60)`` callback records how late each tick fires (a
     blocked event loop: no frame can be painted, no key handled);
   * frame gap: the longest time between two screen updates (``App._display`` calls),
     up to the first frame after the reply is rendered;
   * input lag: a probe message posted to the app every 50 ms records how long it waits
     in the app's queue (what a key press such as Esc would wait);
   * the screen updates (their cost, and those skipped while a Markdown append held
     ``batch_update``) and the garbage collector's pauses;
   * the widgets mounted (Markdown blocks and their parts; each costs its CSS, compose
     and first layout), in all and at most between two screen updates: the work of a
     frame, counted, so not blurred by the machine's load.

Reported: the medians over the rounds, and ratio = UI tokens/s / engine tokens/s.
Targets: UI >= 2,000 tokens/s, and no frozen frames (worst frame gap < 100 ms).

``--calls`` runs one more UI round counting the Python calls of the UI thread (cProfile)
between two screen updates: the work of each frame as a number the machine's load does
not change (on this machine about 3,000 calls take 1 ms idle), to compare two trees on a
busy machine. Reported: the most in one frame, the 90th percentile and the median, and
the calls in all (the whole stream's work: lower is faster); and the five busiest frames,
each with the widgets it mounted (by type) and the widgets of each Markdown part of the
reply the screen laid out in it (the live part, and a closed part not drawn flat yet).

``--profile`` runs one more UI round under pyinstrument (if installed, else cProfile)
from the message being sent to the reply rendered, and prints the tree. (Earlier
prototype variants of the streaming fixes lived here; the app now has them, so they were
removed.)

``--delay-ms N`` replays the tokens at a model's pace instead (the UI then waits for
text: compare the widgets mounted, not the rate).

Usage: python bench/tui_stream.py [--tokens 5000|20000] [--rounds 3] [--calls] [--profile]
       [--delay-ms N]

Results go to bench/results/tui_stream.json (tui_stream_<tokens>.json for other sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import io
import itertools
import json
import os
import platform
import pstats
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FRAME = 1 / 60
FROZEN_S = 0.1
DELAY_S = 0.0  # --delay-ms: the replayed model's pause before each token
QUESTION = "Write me a long, detailed guide with examples."

# --------------------------------------------------------------------- the script

_WORDS = (
    "model token context window prompt reply stream render widget terminal screen "
    "layout buffer queue thread worker event loop message handler timer frame paint "
    "cursor scroll anchor markdown parser block fence list item heading paragraph "
    "latency throughput budget profile sample median round baseline ratio target "
    "cache memory weight layer tensor matrix vector kernel batch decode encode "
    "sampler temperature nucleus vocabulary byte piece marker filter guard repetition "
    "span config theme binding keymap status meter speed device thread core socket "
    "pipe file path folder archive checksum header version release branch commit "
    "review quickly slowly carefully rarely often always never usually gently firmly "
    "small large early late bright quiet stable fragile precise rough steady narrow "
    "wide shallow deep cheap costly simple clever honest modest eager patient"
)
WORDS = _WORDS.split()
_VERBS = (
    "builds checks splits joins sends reads writes drops keeps counts measures tracks "
    "renders parses streams flushes batches waits yields spawns stops resumes trims "
    "grows shrinks sorts filters maps merges caches loads saves prints logs draws"
)
VERBS = _VERBS.split()
_NAMES = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
    "zulu"
)
NAMES = _NAMES.split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(5, 12))]
    words.insert(rng.randint(1, len(words) - 1), rng.choice(VERBS))
    if rng.random() < 0.3:
        i = rng.randrange(len(words))
        words[i] = f"**{words[i]}**" if rng.random() < 0.5 else f"`{words[i]}`"
    if rng.random() < 0.2:
        words.append(str(rng.randint(2, 9999)))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!", "?"])


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def _code(rng: random.Random, number: int) -> str:
    name = f"{rng.choice(VERBS)}_{rng.choice(NAMES)}_{number}"
    arg, other = rng.sample(NAMES, 2)
    lines = [
        "```python",
        f"def {name}({arg}: list[int], {other}: int = {rng.randint(1, 64)}) -> int:",
        f'    """{_sentence(rng)}"""',
        "    total = 0",
        f"    for index, value in enumerate({arg}):",
        f"        if value % {rng.randint(2, 9)} == 0:",
        f"            total += value * {other}",
        "        else:",
        f"            total -= index + {rng.randint(1, 99)}",
        "    return total",
        "```",
    ]
    return "\n".join(lines)


def _section(rng: random.Random, number: int) -> str:
    parts = [f"## {number}. {rng.choice(WORDS).title()} and {rng.choice(WORDS)}"]
    parts.append(_paragraph(rng))
    kind = number % 4
    if kind == 1:
        parts.append("\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(3, 6))))
    elif kind == 2:
        parts.append("\n".join(f"{i}. {_sentence(rng)}" for i in range(1, rng.randint(4, 7))))
    elif kind == 3:
        parts.append(_code(rng, number))
    parts.append(_paragraph(rng))
    return "\n\n".join(parts)


def build_reply(tokenizer: Any, target: int, seed: int = 1) -> tuple[str, int]:
    """A varied Markdown reply of at least ``target`` tokens (and its exact count):
    whole sections while they fit, then short paragraphs to reach the target."""
    rng = random.Random(seed)
    text = "Here is the guide you asked for, section by section."
    number = 0
    while True:
        number += 1
        candidate = text + "\n\n" + _section(rng, number)
        if len(tokenizer.tokenize(candidate)) > target:
            break
        text = candidate
    while len(tokenizer.tokenize(text)) < target:
        text += "\n\n" + _sentence(rng)
    return text, len(tokenizer.tokenize(text))


# --------------------------------------------------------------------- the engine alone


def engine_round(vocab: Any, text: str, settings: Any, n_ctx: int) -> dict:
    from gemma_chat.backend.scripted import ScriptedBackend
    from gemma_chat.chat.conversation import Conversation
    from gemma_chat.generation.engine import Engine
    from gemma_chat.generation.events import TextDelta

    backend = ScriptedBackend(vocab, [text], n_ctx=n_ctx)
    engine = Engine(backend, settings.sampling, settings.repeat_guard)
    conversation = Conversation()
    conversation.add_user(QUESTION)
    deltas, first, done = 0, None, None
    for event in engine.stream(conversation):
        if isinstance(event, TextDelta):
            deltas += 1
            first = first or time.perf_counter()
        else:
            done = event
    end = time.perf_counter()
    assert done is not None and first is not None
    if done.text != text:
        raise SystemExit(f"engine: reply differs from the script ({done.stop_reason})")
    return {
        "deltas": deltas,
        "completion_tokens": done.stats.completion_tokens,
        "stop_reason": str(done.stop_reason),
        "seconds": end - first,
        "tokens_per_s": deltas / (end - first),
    }


# --------------------------------------------------------------------- the instrumented UI


def make_app_class() -> type:
    from textual.message import Message
    from textual.screen import Screen

    import gemma_chat.tui.app as app_module
    from gemma_chat.tui.app import GemmaChatApp
    from gemma_chat.tui.messages import ReplyDelta, ReplyFinished

    class Probe(Message):
        def __init__(self, sent: float) -> None:
            self.sent = sent
            super().__init__()

    class TimedScreen(Screen):
        """The default screen, timing each update it runs (layout, compose, paint)."""

        def _on_timer_update(self) -> None:
            app: Any = self.app
            start = time.perf_counter()
            skipped = bool(app._batch_count)  # an update inside batch_update paints nothing
            super()._on_timer_update()
            app.updates.append((start, time.perf_counter() - start, skipped))

    class BenchApp(GemmaChatApp):
        """The real app, recording when deltas, frames and ticks happen."""

        # Textual resolves CSS_PATH next to the module defining the class: point at
        # the app's own stylesheet.
        CSS_PATH = str(Path(app_module.__file__).with_name(GemmaChatApp.CSS_PATH))

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deltas = 0
            self.tokens_handled = 0
            self.delta_chars = 0
            self.first_delta: float | None = None
            self.finished_at: float | None = None
            self.last_delta_at = 0.0
            self.finish_started = 0.0
            self.finish_handled_at = 0.0
            self.frames: list[float] = []
            self.updates: list[tuple[float, float, bool]] = []  # (start, seconds, skipped)
            self.ticks: list[tuple[float, float]] = []  # (time, lateness)
            self.probes: list[tuple[float, float]] = []  # (sent, wait)
            self.handler_s = 0.0
            self._last_tick: float | None = None
            self.mounted = 0
            self.frame_mounts: list[int] = []  # widgets mounted so far, at each frame
            self.call_counter: CallCounter | None = None

        def get_default_screen(self) -> Screen:
            return TimedScreen(id="_default")

        def start_probes(self) -> None:
            self.set_interval(FRAME, self._tick)
            self.set_interval(0.05, self._probe)

        def _tick(self) -> None:
            now = time.perf_counter()
            if self._last_tick is not None:
                self.ticks.append((now, now - self._last_tick - FRAME))
            self._last_tick = now

        def _probe(self) -> None:
            self.post_message(Probe(time.perf_counter()))

        def on_probe(self, message: Probe) -> None:
            # Keyed by when it was sent: one sent mid-stream may wait past the end.
            self.probes.append((message.sent, time.perf_counter() - message.sent))

        def _register(self, parent: Any, *widgets: Any, **kwargs: Any) -> Any:
            self.mounted += len(widgets)
            if self.call_counter is not None:
                self.call_counter.note(*(type(widget).__name__ for widget in widgets))
            return super()._register(parent, *widgets, **kwargs)

        def _display(self, screen: Any, renderable: Any) -> None:
            if renderable is not None and not self._batch_count:
                self.frames.append(time.perf_counter())
                self.frame_mounts.append(self.mounted)
                if self.call_counter is not None:
                    self.call_counter.mark(self.frames[-1], screen)
            super()._display(screen, renderable)

        async def on_reply_delta(self, message: ReplyDelta) -> None:
            start = time.perf_counter()
            if self.first_delta is None:
                self.first_delta = start
            await _maybe_await(super().on_reply_delta(message))
            # Textual calls the handler of every class in the MRO: stop at this one,
            # which has already run the app's own.
            message.prevent_default()
            self.deltas += 1
            self.tokens_handled += getattr(message, "tokens", 1)
            self.delta_chars += len(message.text)
            self.last_delta_at = time.perf_counter()
            self.handler_s += self.last_delta_at - start

        async def on_reply_finished(self, message: ReplyFinished) -> None:
            self.finish_started = time.perf_counter()
            reply = self.replies.reply  # the ReplyStreamer owns the reply widget
            await _maybe_await(super().on_reply_finished(message))
            message.prevent_default()
            self.finish_handled_at = time.perf_counter()
            rendering = getattr(reply, "rendering", None)
            if rendering is not None and not rendering.done():
                # The prototype reply renders the rest in its own task.
                rendering.add_done_callback(lambda _: self._rendered())
            else:
                self._rendered()

        def _rendered(self) -> None:
            self.finished_at = time.perf_counter()

    return BenchApp


async def _maybe_await(result: Any) -> None:
    # The app's reply handlers may be plain methods or coroutines.
    if inspect.isawaitable(result):
        await result


async def _wait(predicate: Any, timeout: float) -> None:
    # asyncio.sleep, not pilot.pause: pause waits for the queues to drain.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the app")
        await asyncio.sleep(0.02)


def _window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for at, value in samples if start <= at <= end]


async def ui_round(
    app_class: type,
    vocab: Any,
    text: str,
    settings: Any,
    n_ctx: int,
    profiler: Profiler | None = None,
) -> dict:
    from gemma_chat.backend.scripted import ScriptedBackend

    def loader(_settings: Any, _notify: Any) -> tuple[Any, Any]:
        return None, ScriptedBackend(vocab, [text], n_ctx=n_ctx, delay_s=DELAY_S)

    pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            now = time.perf_counter()
            pauses.append((gc_started[0], now - gc_started[0], info["generation"]))

    app = app_class(settings, loader=loader)
    if isinstance(profiler, CallCounter):
        app.call_counter = profiler
    gc.callbacks.append(on_gc)
    try:
        async with app.run_test(size=(80, 24)):
            segments = await _stream_one(app, profiler)
            turns = app.conversation.turns
            done = app.last_done
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()  # the "gc" fix freezes; the next round starts clean
    return _ui_metrics(app, text, turns, done, segments, pauses)


async def _stream_one(app: Any, profiler: Profiler | None) -> int:
    from textual import events
    from textual.widgets import Static

    from gemma_chat.sanitize import visible
    from gemma_chat.tui.widgets.chat_log import ModelReply

    await _wait(lambda: app.engine is not None, 30)
    app.start_probes()
    await asyncio.sleep(0.5)  # the first context count and the first frames settle
    if profiler is not None:
        profiler.start()
    cpu0, app.sent_at = time.process_time(), time.perf_counter()
    app.prompt.set_text(QUESTION)
    app.prompt.post_message(events.Key("enter", None))
    await _wait(lambda: app.finished_at is not None, 300)
    app.cpu_s = time.process_time() - cpu0
    if profiler is not None:
        profiler.stop()
    await asyncio.sleep(0.3)  # let the last frames be painted
    reply = app.query_one(ModelReply)
    if reply.text != app.conversation.turns[-1].text:
        raise SystemExit("UI: the reply widget does not hold the whole reply")
    if "".join(part.source for part in reply.segments) != visible(reply.text):
        raise SystemExit("UI: the reply's Markdown parts do not show the whole reply")
    # What the screen lays out: the flat lines and the Markdown widgets still shown.
    return sum(1 for child in reply.children if child.display and not isinstance(child, Static))


def _ui_metrics(app: Any, text: str, turns: list, done: Any, segments: int, pauses: list) -> dict:
    from gemma_chat.chat.conversation import Role, StopReason

    if not (turns and turns[-1].role is Role.MODEL and turns[-1].text == text):
        raise SystemExit("UI: the conversation does not end with the complete reply")
    assert done is not None and done.stop_reason is StopReason.END_OF_TURN
    assert app.first_delta is not None and app.finished_at is not None
    start, end = app.first_delta, app.finished_at
    tokens = app.tokens_handled
    if app.delta_chars != len(text):
        raise SystemExit(f"UI: handled {app.delta_chars} characters of {len(text)}")
    frames = [t for t in app.frames if start <= t <= end]
    # Up to the first frame that shows the finished reply.
    first_frame_after = next((t for t in app.frames if t >= end), None)
    edges = [start, *frames, first_frame_after or end]
    gaps = [b - a for a, b in itertools.pairwise(edges)]
    updates = [(d, skipped) for at, d, skipped in app.updates if start <= at <= end]
    gcs = [(d, g) for at, d, g in pauses if start <= at <= end]
    lags = _window(app.ticks, start, end)
    # Widgets mounted from the first delta to the first frame after the end, per frame.
    mounts = [n for t, n in zip(app.frames, app.frame_mounts, strict=True) if t >= start]
    last = next((i for i, t in enumerate(t for t in app.frames if t >= start) if t >= end), None)
    mounts = mounts[: last + 1] if last is not None else mounts
    per_frame = [b - a for a, b in itertools.pairwise(mounts)]
    probes = _window(app.probes, start, end)
    return {
        "deltas_handled": app.deltas,
        "tokens_handled": tokens,
        "completion_tokens": done.stats.completion_tokens,
        "seconds": end - start,
        "tokens_per_s": tokens / (end - start),
        "engine_in_app_tokens_per_s": done.stats.tokens_per_s,
        "frames": len(frames),
        "fps": len(frames) / (end - start),
        "worst_frame_gap_ms": max(gaps) * 1000,
        "final_frame_ms": (first_frame_after - end) * 1000 if first_frame_after else None,
        "worst_loop_lag_ms": max(lags, default=0.0) * 1000,
        "ticks": len(lags),
        "worst_input_lag_ms": max(probes, default=0.0) * 1000,
        "probes_handled": len(probes),
        "delta_handler_s": app.handler_s,
        "last_delta_s": app.last_delta_at - start,
        "finish_handler_s": app.finish_handled_at - app.finish_started,
        "finish_to_rendered_s": end - app.finish_started,
        "screen_updates": len(updates),
        "screen_updates_skipped_in_batch": sum(skipped for _, skipped in updates),
        "worst_screen_update_ms": max((d for d, _ in updates), default=0.0) * 1000,
        "screen_update_s": sum(d for d, _ in updates),
        "gc_collections": len(gcs),
        "gc_full_collections": sum(g == 2 for _, g in gcs),
        "gc_s": sum(d for d, _ in gcs),
        "worst_gc_ms": max((d for d, _ in gcs), default=0.0) * 1000,
        "reply_segments": segments,
        "widgets_mounted": mounts[-1] - mounts[0] if mounts else 0,
        "max_widgets_mounted_per_frame": max(per_frame, default=0),
        "cpu_s": app.cpu_s,
        "cpu_util": app.cpu_s / (end - app.sent_at),
    }


class CallCounter:
    """Counts the UI thread's Python calls (cProfile) up to each screen update."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self.running = False
        self.marks: list[tuple[float, int]] = []  # (frame time, calls so far)
        self.notes: list[str] = []  # what the frame being counted did
        self.frame_notes: list[str] = []  # at each mark

    def start(self) -> None:
        self.running = True
        self.profile.enable()

    def stop(self) -> None:
        self.running = False
        self.profile.disable()

    def note(self, *what: str) -> None:
        if self.running:
            self.notes.extend(what)

    def mark(self, at: float, screen: Any = None) -> None:
        if self.running:
            self.profile.disable()
            self.marks.append((at, sum(entry.callcount for entry in self.profile.getstats())))
            self.frame_notes.append(self._describe(screen))
            self.notes = []
            self.profile.enable()

    def _describe(self, screen: Any) -> str:
        """The widgets mounted since the last frame (by type) and, in the reply, the
        Markdown widgets and their blocks laid out now."""
        from textual.widgets import Markdown

        from gemma_chat.tui.widgets.chat_log import ModelReply

        counts: dict[str, int] = {}
        for name in self.notes:
            counts[name] = counts.get(name, 0) + 1
        mounted = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=_by_count))
        shown = []
        replies = screen.query(ModelReply) if screen is not None else []
        for reply in list(replies)[-1:]:
            for part in reply.query_children(Markdown):
                if part.display:
                    shown.append(str(sum(1 for _ in part.walk_children())))
        return f"mounted {len(self.notes)} ({mounted or '-'}); live Markdown {'+'.join(shown)}"

    def busiest(self, start: float, end: float, top: int = 5) -> list[str]:
        """The ``top`` busiest frames: calls, when, what they mounted and laid out."""
        pairs = zip(self.marks, self.frame_notes, strict=True)
        marks = [(at, calls, note) for (at, calls), note in pairs if at >= start]
        last = next((i for i, (at, *_) in enumerate(marks) if at >= end), len(marks) - 1)
        frames = [
            (b[1] - a[1], b[0] - start, b[2]) for a, b in itertools.pairwise(marks[: last + 1])
        ]
        frames.sort(reverse=True)
        return [f"{calls / 1000:,.0f}k at {at:.2f} s: {note}" for calls, at, note in frames[:top]]

    def per_frame(self, start: float, end: float) -> list[int]:
        """Calls between two screen updates, from the first delta to the first frame after
        the reply is rendered."""
        marks = [(at, calls) for at, calls in self.marks if at >= start]
        last = next((i for i, (at, _) in enumerate(marks) if at >= end), len(marks) - 1)
        counts = [calls for _, calls in marks[: last + 1]]
        return [b - a for a, b in itertools.pairwise(counts)]


def calls_round(app_class: type, vocab: Any, text: str, settings: Any, n_ctx: int) -> dict:
    counter = CallCounter()
    box: dict[str, Any] = {}

    class Counted(app_class):  # type: ignore[valid-type,misc]
        def _rendered(self) -> None:
            super()._rendered()
            box["span"] = (self.first_delta, self.finished_at)

    asyncio.run(ui_round(Counted, vocab, text, settings, n_ctx, counter))
    work = sorted(counter.per_frame(*box["span"]))
    return {
        "frames": len(work),
        "max_calls_per_frame": work[-1],
        "p90_calls_per_frame": work[int(len(work) * 0.9)],
        "median_calls_per_frame": statistics.median(work),
        "calls": sum(work),
        "busiest_frames": counter.busiest(*box["span"]),
    }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


class Profiler:
    """Profiles the UI thread from the message being sent to the reply finished:
    pyinstrument (sampling, low overhead) when installed, else cProfile."""

    def __init__(self) -> None:
        try:
            from pyinstrument import Profiler as Sampler
        except ImportError:
            self.sampler: Any = None
            self.cprofile = cProfile.Profile()
        else:
            self.sampler = Sampler(interval=0.0005, async_mode="disabled")

    def start(self) -> None:
        if self.sampler is not None:
            self.sampler.start()
        else:
            self.cprofile.enable()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        else:
            self.cprofile.disable()

    def report(self) -> str:
        if self.sampler is not None:
            # Every frame (the time is all inside Textual), down to 2% of the total.
            text = self.sampler.output_text(show_all=True, time="percent_of_total")
            kept = []
            for line in text.splitlines():
                share = re.search(r"(\d+\.\d)% ", line)
                if share is None or float(share.group(1)) >= 2.0:
                    kept.append(line)
            return "\n".join(kept)
        out = io.StringIO()
        stats = pstats.Stats(self.cprofile, stream=out)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        return out.getvalue()


def profile_round(app_class: type, vocab: Any, text: str, settings: Any, n_ctx: int) -> str:
    profiler = Profiler()
    asyncio.run(ui_round(app_class, vocab, text, settings, n_ctx, profiler))
    return profiler.report()


# --------------------------------------------------------------------- main


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more UI round, profiled")
    parser.add_argument(
        "--calls", action="store_true", help="one more UI round, counting calls per frame"
    )
    parser.add_argument("--model", help="GGUF whose vocabulary to use (default: the demo)")
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="pause before each token (a model's pace)"
    )
    args = parser.parse_args()
    global DELAY_S
    DELAY_S = args.delay_ms / 1000

    tmp = tempfile.TemporaryDirectory(prefix="gemma-chat-bench-")
    os.environ["GEMMA_CHAT_DATA_DIR"] = str(Path(tmp.name) / "data")
    os.environ["GEMMA_CHAT_CONFIG"] = str(Path(tmp.name) / "config.toml")

    import textual

    import gemma_chat
    from gemma_chat.backend.local import load_vocab
    from gemma_chat.config.settings import RepeatGuard, Sampling, Settings

    if args.model is None:
        from gemma_chat.models.demo import demo_model

        demo = demo_model()
        if demo is None:
            raise SystemExit("no --model and the demo extra is not installed")
        args.model = str(demo)
    vocab = load_vocab(Path(args.model))
    text, count = build_reply(vocab, args.tokens)
    n_ctx = max(16384, count + 2048)  # --tokens 20000 needs a larger context
    settings = Settings(
        sampling=Sampling(max_tokens=max(6000, count + 500), seed=1),
        repeat_guard=RepeatGuard(enabled=False),
    )
    variant = "stock"
    app_class = make_app_class()
    load_before = os.getloadavg()

    engine_rounds, ui_rounds = [], []
    for index in range(args.rounds):
        engine_rounds.append(engine_round(vocab, text, settings, n_ctx))
        ui_rounds.append(asyncio.run(ui_round(app_class, vocab, text, settings, n_ctx)))
        e, u = engine_rounds[-1], ui_rounds[-1]
        print(
            f"round {index + 1}: engine {e['tokens_per_s']:,.0f} tok/s, UI "
            f"{u['tokens_per_s']:,.0f} tok/s ({u['seconds']:.2f} s), worst frame gap "
            f"{u['worst_frame_gap_ms']:.0f} ms, loop lag {u['worst_loop_lag_ms']:.0f} ms, "
            f"input lag {u['worst_input_lag_ms']:.0f} ms",
            flush=True,
        )
    load_after = os.getloadavg()

    engine_median = _median(engine_rounds, "tokens_per_s")
    ui_median = _median(ui_rounds, "tokens_per_s")
    summary = {
        "ui_tokens_per_s": ui_median,
        "engine_tokens_per_s": engine_median,
        "ratio": ui_median / engine_median,
        "worst_frame_gap_ms": _median(ui_rounds, "worst_frame_gap_ms"),
        "worst_loop_lag_ms": _median(ui_rounds, "worst_loop_lag_ms"),
        "worst_input_lag_ms": _median(ui_rounds, "worst_input_lag_ms"),
        "fps": _median(ui_rounds, "fps"),
        "worst_screen_update_ms": _median(ui_rounds, "worst_screen_update_ms"),
        "screen_updates_skipped": _median(ui_rounds, "screen_updates_skipped_in_batch"),
        "finish_handler_ms": _median(ui_rounds, "finish_handler_s") * 1000,
        "final_frame_ms": _median(ui_rounds, "final_frame_ms"),
        "gc_full": _median(ui_rounds, "gc_full_collections"),
        "gc_ms": _median(ui_rounds, "gc_s") * 1000,
        "widgets_mounted": _median(ui_rounds, "widgets_mounted"),
        "max_widgets_per_frame": _median(ui_rounds, "max_widgets_mounted_per_frame"),
        "ui_seconds": _median(ui_rounds, "seconds"),
        "cpu_util": _median(ui_rounds, "cpu_util"),
        "meets_rate_target": ui_median >= 2000,
        "no_frozen_frames": _median(ui_rounds, "worst_frame_gap_ms") < FROZEN_S * 1000,
    }
    result = {
        "variant": variant,
        "gemma_chat": str(Path(gemma_chat.__file__).parent),  # the code measured
        "vocab": Path(args.model).name,
        "reply_tokens": count,
        "reply_chars": len(text),
        "rounds": args.rounds,
        "size": [80, 24],
        "python": platform.python_version(),
        "textual": textual.__version__,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "summary": summary,
        "engine": engine_rounds,
        "ui": ui_rounds,
    }
    if args.calls:
        result["calls"] = calls_round(app_class, vocab, text, settings, n_ctx)
    if args.profile:
        result["profile"] = profile_round(app_class, vocab, text, settings, n_ctx)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = "tui_stream.json" if args.tokens == 5000 else f"tui_stream_{args.tokens}.json"
    (out / name).write_text(json.dumps(result, indent=2))
    tmp.cleanup()

    print(
        f"\nreply {count:,} tokens ({len(text):,} chars), {variant}, "
        f"median of {args.rounds}, load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    rows = [
        ("UI tokens/s", f"{ui_median:,.0f}", ">= 2,000"),
        ("engine tokens/s", f"{engine_median:,.0f}", ""),
        ("ratio UI / engine", f"{summary['ratio']:.3f}", ""),
        ("UI stream time", f"{summary['ui_seconds']:.2f} s", ""),
        ("screen updates/s", f"{summary['fps']:.1f}", ""),
        ("worst frame gap", f"{summary['worst_frame_gap_ms']:.0f} ms", "< 100 ms"),
        ("worst loop lag", f"{summary['worst_loop_lag_ms']:.0f} ms", ""),
        ("worst input lag", f"{summary['worst_input_lag_ms']:.0f} ms", "(Esc waits)"),
        ("worst screen update", f"{summary['worst_screen_update_ms']:.0f} ms", ""),
        ("updates skipped", f"{summary['screen_updates_skipped']:.0f}", "(batch held)"),
        ("finish handler", f"{summary['finish_handler_ms']:.0f} ms", ""),
        ("final frame after", f"{summary['final_frame_ms']:.0f} ms", ""),
        ("full GCs / GC time", f"{summary['gc_full']:.0f} / {summary['gc_ms']:.0f} ms", ""),
        ("widgets mounted", f"{summary['widgets_mounted']:.0f}", ""),
        ("most in one frame", f"{summary['max_widgets_per_frame']:.0f}", ""),
    ]
    if args.calls:
        calls = result["calls"]
        rows += [
            ("calls, most a frame", f"{calls['max_calls_per_frame'] / 1000:,.0f}k", ""),
            ("calls, p90 a frame", f"{calls['p90_calls_per_frame'] / 1000:,.0f}k", ""),
            ("calls, median", f"{calls['median_calls_per_frame'] / 1000:,.0f}k", ""),
            ("calls in all", f"{calls['calls'] / 1e6:,.2f}M", f"({calls['frames']} frames)"),
        ]
        busiest = calls["busiest_frames"]
    for label, value, target in rows:
        print(f"  {label:<20} {value:>12}  {target}")
    if args.calls:
        print("  busiest frames (calls, time from the first delta, work):")
        for line in busiest:
            print(f"    {line}")
    if args.profile:
        print(result["profile"], file=sys.stderr)


if __name__ == "__main__":
    main()
