"""Capture llama.cpp's log so it never reaches the user unless ``--debug`` is given.

llama-cpp-python installs a callback that prints errors to stderr even with
``verbose=False``. We replace it with one that keeps the recent lines (to explain load
failures) and prints only in debug mode.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections import deque
from typing import Any

from gemma_chat.sanitize import visible

_LINES: deque[str] = deque(maxlen=400)
_DEBUG, _INFO, _CONT = 1, 2, 5  # ggml_log_level
_state: dict[str, Any] = {"debug": False, "callback": None}


def install(debug: bool) -> None:
    """Route llama.cpp's log through this module. Safe to call more than once."""
    import llama_cpp

    if not debug:
        # ggml runs gdb to print a backtrace before aborting; never show that to users.
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    _state["debug"] = debug
    if _state["callback"] is not None:
        return

    @llama_cpp.llama_log_callback
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        if level == _CONT:
            level = _state.get("level", _INFO)
        _state["level"] = level
        # Debug lines (one per graph input at every load) would push the buffer sizes
        # and errors this module is read for out of the window; they are only shown.
        if level != _DEBUG:
            _LINES.append(line)
        if _state["debug"]:
            sys.stderr.write(visible(line))  # it quotes GGUF metadata (general.name, ...)
            sys.stderr.flush()

    _state["callback"] = _callback  # keep a reference: C holds only a raw pointer
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def recent(count: int = 400) -> list[str]:
    """The most recent log lines, joined across partial writes."""
    text = "".join(list(_LINES)[-count:])
    return [line for line in text.splitlines() if line.strip()]


def clear() -> None:
    """Forget the captured lines (call before an operation whose log you want)."""
    _LINES.clear()


def last_error() -> str | None:
    """The most specific error llama.cpp logged, without its function prefixes.

    llama.cpp logs a failure as a chain ending in generic lines ("failed to load
    model"); the first specific line of that chain says what was wrong.
    """
    found = []
    for line in recent():
        lowered = line.lower()
        if "error" in lowered or "failed" in lowered:
            text = re.sub(r"^(\w+:\s*)+", "", line.strip())
            text = text.removeprefix("error loading model: ")
            text = re.sub(r"^(\w+:\s*)+", "", text)
            if not text.startswith("failed to load model"):
                found.append(text)
    return found[0] if found else None


def offloaded_layers() -> int | None:
    """Layers llama.cpp reported offloading to the GPU during the last load, if it said."""
    for line in reversed(recent()):
        match = re.search(r"offloaded (\d+)/(\d+) layers to GPU", line)
        if match:
            return int(match.group(1))
    return None
