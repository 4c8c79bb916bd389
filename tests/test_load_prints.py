"""What llama.cpp and llama-cpp-python print while loading a model is GGUF metadata
(untrusted): it must never reach the terminal as control sequences (review finding 1, 7,
and the metadata-key gap of finding 8).

Real llama.cpp on tiny Gemma 2 GGUFs whose metadata is hostile, real processes on a pty.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from escapes import CORPUS, FILE_SAFE, SHOWN, TUI_FORBIDDEN, leaked
from test_signals import _finish, _read_until, _start_app
from test_terminal_escapes import run_in_pty
from tinygemma import build_tiny_gemma2

SHOWN_BYTES = SHOWN.encode()
EVIL_TEMPLATE = f"EVIL{FILE_SAFE} {{{{ messages }}}}"
"""A chat template llama-cpp-python prints raw (``Using gguf chat template: ...``)."""
EVIL_KEY = f"evil.key{FILE_SAFE}"
READY = b"F1 help"
"""The end of the input's hint once the model is ready (the whole hint may be cut)."""


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
        "import sys, gemma_chat.tui.app as tui, gemma_chat.tui.loading as loading\n"
        "def run_tui(settings, theme=None, resume=None):\n"
        "    loading.default_loader(settings, lambda text: None)\n"
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


def with_added_string(source: Path, target: Path, key: str, value: str) -> None:
    """Copy a GGUF with one more string in its metadata, by bytes: the new key goes right
    after the header, padded to GGUF's default alignment (32) with trailing spaces, so the
    tensor data is copied as is (rewriting the demo model's 262k-entry vocabulary with
    ``gguf`` took 18 s of the suite)."""
    raw_key, raw_value = key.encode(), value.encode()
    size = 8 + len(raw_key) + 4 + 8 + len(raw_value)
    raw_value += b" " * (-size % 32)
    entry = len(raw_key).to_bytes(8, "little") + raw_key + (8).to_bytes(4, "little")  # string
    entry += len(raw_value).to_bytes(8, "little") + raw_value
    with source.open("rb") as src, target.open("wb") as dst:
        head = src.read(24)  # magic, version, tensor count, key count
        assert head[:4] == b"GGUF" and int.from_bytes(head[4:8], "little") == 3, head
        dst.write(head[:16] + (int.from_bytes(head[16:24], "little") + 1).to_bytes(8, "little"))
        dst.write(entry)
        shutil.copyfileobj(src, dst, 1 << 20)


@pytest.fixture(scope="module")
def evil_demo(demo_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model with a hostile chat template: big enough that the app can be left
    while llama.cpp still loads it (a tiny model loads before the app can quit)."""
    target = tmp_path_factory.mktemp("evil-demo") / "evil.gguf"
    with_added_string(demo_path, target, "tokenizer.chat_template", EVIL_TEMPLATE)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl+q", "sigterm"])
def test_leaving_the_app_mid_load_prints_the_template_safely(evil_demo: Path, how: str) -> None:
    """The reviewer's scenario: the app is left while the model loads; the loader thread
    goes on and llama-cpp-python prints the chat template after the screen is gone."""
    child, primary = _start_app(["--model", str(evil_demo)])
    seen = bytearray()
    try:
        # The screen is up with either hint; on a slow machine the first frame may already
        # be the ready one (the load finished first), which the race skip below covers.
        _read_until(primary, seen, lambda: b"Loading the model" in seen or READY in seen, 60)
        if how == "ctrl+q":
            os.write(primary, b"\x11")
        else:
            child.send_signal(signal.SIGTERM)
        code = _finish(child, primary, seen)
    finally:
        if child.poll() is None:
            child.kill()
    assert code == (0 if how == "ctrl+q" else 128 + signal.SIGTERM), bytes(seen[-2000:])
    after = bytes(seen[seen.find(b"\x1b[?1049l") :])
    assert leaked(bytes(seen), TUI_FORBIDDEN) == [] and leaked(after) == [], after
    if b"Using gguf chat template: EVIL" not in after:
        # A race: the load may finish, or the process end, before the loader prints (seen
        # in 2 of 3 SIGTERM runs on an idle machine). Nothing leaked either way;
        # test_a_load_that_outlives_the_app_prints_safely reaches the moment every time.
        pytest.skip("the loader did not print after the app this run (race not reached)")
    assert SHOWN_BYTES in after
