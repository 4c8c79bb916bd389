"""What llama.cpp and llama-cpp-python print while loading a model is GGUF metadata
(untrusted): it must never reach the terminal as control sequences (review finding 1, 7,
and the metadata-key gap of finding 8).

Real llama.cpp on tiny Gemma 2 GGUFs whose metadata is hostile, real processes on a pty.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from escapes import CORPUS, FILE_SAFE, SHOWN, leaked
from test_terminal_escapes import run_in_pty
from tinygemma import build_tiny_gemma2

SHOWN_BYTES = SHOWN.encode()
EVIL_TEMPLATE = f"EVIL{FILE_SAFE} {{{{ messages }}}}"
"""A chat template llama-cpp-python prints raw (``Using gguf chat template: ...``)."""
EVIL_KEY = f"evil.key{FILE_SAFE}"


@pytest.fixture(scope="module")
def evil_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 2 whose name, chat template and one metadata key are hostile."""
    folder = tmp_path_factory.mktemp("evil-load")
    metadata = {"tokenizer.chat_template": EVIL_TEMPLATE, EVIL_KEY: "value"}
    return build_tiny_gemma2(folder / "evil.gguf", ("Hi",), name=CORPUS, metadata=metadata).path


def test_a_load_that_outlives_the_app_prints_safely(evil_model: Path) -> None:
    """The app's loader keeps llama-cpp-python verbose (its quiet mode points fds 1 and 2
    at /dev/null, under the app's feet), so it prints the GGUF's chat template. When the
    app is quit or signalled mid-load, Textual has given the streams back and the loader
    thread prints after the screen is gone. Here the CLI's root command runs the app's
    real loader in place of the app, which is that moment without a race."""
    script = (
        "import sys, gemma_chat.tui.app as tui\n"
        "def run_tui(settings, theme=None, resume=None):\n"
        "    tui.default_loader(settings, lambda text: None)\n"
        "    return 0\n"
        "tui.run_tui = run_tui\n"
        "from gemma_chat.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    code, seen = run_in_pty("--model", str(evil_model), python=["-c", script])
    assert code == 0, seen
    assert b"Using gguf chat template: EVIL" in seen, seen  # it did print the template
    assert leaked(seen) == [], seen
    assert SHOWN_BYTES in seen


def test_debug_log_is_safe(evil_model: Path) -> None:
    """``--debug`` echoes llama.cpp's log, whose key/value dump quotes general.name."""
    code, seen = run_in_pty("ask", "--model", str(evil_model), "-n", "2", "--debug", "hi")
    assert code == 0, seen
    assert b"general.name" in seen, seen
    assert leaked(seen) == [], seen
    assert SHOWN_BYTES in seen


def test_models_info_shows_hostile_metadata_keys_safely(evil_model: Path) -> None:
    code, seen = run_in_pty("models", "info", str(evil_model))
    assert code == 0, seen
    assert b"evil.key" in seen, seen
    assert leaked(seen) == [], seen
    assert b"evil.key" + SHOWN_BYTES in seen  # the key itself shows its ESC
