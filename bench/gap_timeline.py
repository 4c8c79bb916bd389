"""Where the worst frame gaps of bench/tui_stream.py go: a timeline of one UI round.

Wraps (from outside, nothing in gemma_chat/ changed) the reply's slice writes, the
flat drawing of closed parts, the final render, the screen updates (their layout and
their paint apart), the garbage collector and the frames, runs one UI round of
``bench/tui_stream.py``, and prints the ``--top`` widest gaps between two frames with
what ran inside each (milliseconds from the gap's start, and how long).

Usage: python bench/gap_timeline.py [--tokens 5000] [--top 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

EVENTS: list[tuple[float, float, str]] = []  # (start, seconds, what)


def _wrap_async(owner: Any, name: str, label: Any) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            EVENTS.append((start, time.perf_counter() - start, label(*args, **kwargs)))

    setattr(owner, name, wrapper)


def _wrap(owner: Any, name: str, label: Any) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            EVENTS.append((start, time.perf_counter() - start, label(*args, **kwargs)))

    setattr(owner, name, wrapper)


def instrument() -> None:
    from textual._compositor import Compositor
    from textual.screen import Screen

    from gemma_chat.tui.widgets import chat_log, flat_markdown

    _wrap_async(chat_log.ModelReply, "write", lambda self, delta: f"write {len(delta)} ch")
    _wrap_async(chat_log.ModelReply, "_final_render", lambda self: "final render")
    _wrap_async(flat_markdown, "_flatten", lambda *a, **k: "flatten")
    _wrap(flat_markdown, "draw", lambda widget: f"  draw {widget.region.height} lines")
    _wrap(
        Screen,
        "_refresh_layout",
        lambda self, *a, **k: f"  layout ({len(self._compositor.full_map or ())} widgets)",
    )
    _wrap(Screen, "_compositor_refresh", lambda self: "  paint")
    _wrap(Screen, "_on_timer_update", lambda self: "screen update")
    _wrap(Compositor, "update_widgets", lambda self, widgets: f"  update {len(widgets)} w")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="gemma-chat-bench-")
    os.environ["GEMMA_CHAT_DATA_DIR"] = str(Path(tmp.name) / "data")
    os.environ["GEMMA_CHAT_CONFIG"] = str(Path(tmp.name) / "config.toml")

    import tui_stream as bench

    from gemma_chat.backend.local import load_vocab
    from gemma_chat.config.settings import RepeatGuard, Sampling, Settings
    from gemma_chat.models.demo import demo_model

    vocab = load_vocab(Path(str(demo_model())))
    text, count = bench.build_reply(vocab, args.tokens)
    settings = Settings(
        sampling=Sampling(max_tokens=max(6000, count + 500), seed=1),
        repeat_guard=RepeatGuard(enabled=False),
    )
    instrument()
    app_class = bench.make_app_class()
    box: dict[str, Any] = {}

    class Timed(app_class):  # type: ignore[valid-type,misc]
        def _rendered(self) -> None:
            super()._rendered()
            box["app"] = self

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            box["gc"] = time.perf_counter()
        else:
            start = box["gc"]
            EVENTS.append((start, time.perf_counter() - start, f"gc{info['generation']}"))

    gc.callbacks.append(on_gc)
    result = asyncio.run(bench.ui_round(Timed, vocab, text, settings, max(16384, count + 2048)))
    gc.callbacks.remove(on_gc)
    app = box["app"]
    start, end = app.first_delta, app.finished_at
    frames = [t for t in app.frames if t >= start]
    after = next((i for i, t in enumerate(frames) if t >= end), len(frames) - 1)
    edges = [start, *frames[: after + 1]]
    gaps = sorted(itertools.pairwise(edges), key=lambda g: g[0] - g[1])
    print(
        f"{count} tokens: {result['tokens_per_s']:,.0f} tok/s, worst gap "
        f"{result['worst_frame_gap_ms']:.0f} ms, {len(edges) - 1} frames"
    )
    for a, b in gaps[: args.top]:
        index = edges.index(b)
        print(f"\ngap {1000 * (b - a):.0f} ms (frame {index}, at {b - start:.2f} s)")
        for at, seconds, what in sorted(EVENTS):
            if a - 0.0005 <= at <= b:
                print(f"  +{1000 * (at - a):6.1f}  {1000 * seconds:6.1f} ms  {what}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
