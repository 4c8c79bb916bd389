"""Running gemma-chat's own helper processes: the model probe and the GGUF reader.

Both read files that may crash llama.cpp, so they run in a child that is started the
same careful way: from the package's folder (``python -m`` imports from the working
directory first, and a stray ``json.py`` or an old ``gemma_chat/`` there must not replace
the installed code), in its own session (Ctrl+C on the terminal goes to gemma-chat, which
decides what stopping means), with no stdin, and without ggml's gdb backtrace on an abort.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def package_root() -> Path:
    """The folder that holds the ``gemma_chat`` package."""
    return Path(__file__).resolve().parent.parent.parent


def run_child(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a helper process to the end and capture its output as text.

    Raises:
        subprocess.TimeoutExpired: It ran longer than ``timeout`` seconds (it is killed).
    """
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "GGML_NO_BACKTRACE": "1"},
        cwd=package_root(),
        start_new_session=True,
    )
