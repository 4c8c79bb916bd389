"""Every file read from a path a user can choose is bounded: only regular files, with a
size cap, and opening never blocks (a FIFO would hang the run, /dev/zero never ends)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import GREEDY, run_cli

from gemma_chat.backend import kv_state
from gemma_chat.backend.kv_cache import KVStateCache, resume_ids
from gemma_chat.chat.conversation import Conversation
from gemma_chat.config.settings import KVCacheSettings
from gemma_chat.files import FileTooLarge, NotRegularFile, read_regular_file
from gemma_chat.generation.engine import Engine

KEY = "0b7c1f9e-5d1a-4a57-9a8e-3f2d2c1b0a99"
SHA = "a" * 64


def raises(kind: type[BaseException], call: Callable[..., object], *args: object) -> bool:
    """Whether ``call(*args)`` raises ``kind``."""
    try:
        call(*args)
    except kind:
        return True
    return False


def finishes(call: Callable[[], object], fifo: Path, wait_s: float = 30.0) -> tuple[bool, object]:
    """Run ``call`` in a thread; if it is still blocked on ``fifo`` after ``wait_s``,
    unblock it by opening the FIFO's other end (so a failing test does not hang)."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(wait_s)
    blocked = thread.is_alive()
    if blocked:
        with open(fifo, "wb"):
            pass
        thread.join()
    return not blocked, result[0] if result else None


def test_read_regular_file_refuses_fifos_devices_and_large_files(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 100)
    assert read_regular_file(small, 100) == b"x" * 100
    with pytest.raises(FileTooLarge, match="larger than 99 bytes"):
        read_regular_file(small, 99)
    with pytest.raises(NotRegularFile):
        read_regular_file("/dev/zero", 1 << 20)
    with pytest.raises(NotRegularFile):
        read_regular_file(tmp_path, 100)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert finishes(lambda: raises(NotRegularFile, read_regular_file, fifo, 10), fifo) == (
        True,
        True,
    )
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.write_bytes(b"# big\n" * 200_000), "larger than 1 MiB"),
    ],
    ids=["dev-zero", "fifo", "too-large"],
)
def test_a_config_that_is_not_a_small_regular_file_is_one_line_exit_2(
    tmp_path: Path, make, message: str
) -> None:
    config = tmp_path / "config.toml"
    make(config)
    proc = run_cli("ask", "hi", env={"GEMMA_CHAT_CONFIG": str(config)}, timeout=60)
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and message in err and "config file" in err


def test_a_deeply_nested_config_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    proc = run_cli("ask", "hi", env={"GEMMA_CHAT_CONFIG": str(config)}, timeout=60)
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2, err
    assert err.splitlines() == [f"gemma-chat: error: config file {config} is nested too deeply"]


@pytest.fixture
def saved(tiny_backends, tmp_path: Path) -> tuple[object, KVStateCache, list[int]]:
    """A tiny Gemma 2 conversation with its KV state saved."""
    backend = tiny_backends["runaway"]
    engine = Engine(backend, GREEDY.model_copy(update={"max_tokens": 8}))
    conversation = Conversation()
    conversation.add_user("Tell me a story, please. " * 8)
    engine.reply(conversation)
    ids = resume_ids(engine.template, conversation)
    cache = KVStateCache(KVCacheSettings(min_tokens=16), tmp_path / "kv")
    assert cache.save(backend, KEY, SHA, ids), cache.last_reason
    return backend, cache, ids


@pytest.mark.parametrize("suffix", [".json", ".kv"])
def test_a_fifo_in_the_kv_cache_falls_back_to_re_evaluation(saved, suffix: str) -> None:
    backend, cache, ids = saved
    path = cache.directory / f"{KEY}{suffix}"
    path.unlink()
    os.mkfifo(path)
    done, restored = finishes(lambda: cache.restore(backend, KEY, SHA, ids), path)
    assert done, "restore blocked on the FIFO"
    assert restored == 0
    assert cache.save(backend, KEY, SHA, ids), cache.last_reason  # and the entry heals
    assert path.is_file()


def test_state_files_that_are_fifos_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "state.kv"
    os.mkfifo(fifo)
    assert finishes(lambda: raises(OSError, kv_state.read_tokens, fifo), fifo) == (True, True)


def test_theme_files_are_bounded_and_never_raise(tmp_path: Path) -> None:
    from gemma_chat.tui.themes import load_themes

    good = 'name = "fine"\nprimary = "#336699"\n'
    (tmp_path / "a-big.toml").write_text(good + "# padding\n" * 30_000)
    (tmp_path / "b-deep.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "c-fine.toml").write_text(good)
    loaded, failed = load_themes(tmp_path)
    assert "fine" in {theme.name for theme in loaded}
    reasons = {failure.path.name: failure.reason for failure in failed}
    assert reasons == {
        "a-big.toml": "cannot read the file: larger than 256 KiB",
        "b-deep.toml": "invalid TOML: nested too deeply",
    }


def test_a_fifo_as_the_state_file_reads_as_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    from gemma_chat.config import ui_prefs as state

    path = state.state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    assert finishes(state.load_state, path) == (True, {})
