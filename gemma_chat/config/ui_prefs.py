"""Remembered UI state (such as the last theme chosen), kept in a small JSON file.

The file is ``state.json`` in :func:`gemma_chat.paths.data_dir`. It is a convenience, not
configuration: a missing, unreadable or corrupt file reads as empty, and a failed write is
reported by the return value rather than raised, so the app never stops over it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gemma_chat import paths
from gemma_chat.files import read_regular_file
from gemma_chat.units import MIB

STATE_FILE_NAME = "state.json"
STATE_LIMIT = MIB  # the state is a few remembered choices


def state_file() -> Path:
    """The path of the state file.

    Returns:
        ``<data dir>/state.json``.
    """
    return paths.data_dir() / STATE_FILE_NAME


def load_state() -> dict[str, Any]:
    """Read the remembered state.

    Returns:
        The stored mapping, or an empty dict when the file is missing, unreadable, not
        valid JSON or not a JSON object. Never raises.
    """
    try:
        # Bounded, and never a FIFO or a device: the data directory is the user's choice.
        data = json.loads(read_regular_file(state_file(), STATE_LIMIT).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        # ValueError covers both malformed JSON and bytes that are not UTF-8.
        return {}
    return data if isinstance(data, dict) else {}


def save_state(**changes: Any) -> bool:
    """Merge ``changes`` into the remembered state and write it atomically.

    The new content goes to a temporary file in the same folder, which then replaces the
    old file, so a crash mid-write never leaves a half-written ``state.json``.

    Args:
        **changes: Keys to set; values must be JSON-serialisable.

    Returns:
        True if the state was written, False if the file system refused (the error is
        swallowed: losing remembered state must not stop the app).

    Raises:
        TypeError: A value cannot be serialised to JSON (a programming error).
    """
    state = {**load_state(), **changes}
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    target = state_file()
    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            dir=target.parent,
            prefix=".state-",
            suffix=".tmp",
            delete=False,
        ) as tmp:
            tmp_name = tmp.name
            tmp.write(text)
        os.replace(tmp_name, target)
    except OSError:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                Path(tmp_name).unlink(missing_ok=True)
        return False
    return True
