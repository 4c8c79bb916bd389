"""SIGTERM and SIGHUP end a real process like Ctrl+C: the reply shown so far is saved,
marked partial, the terminal is given back, and the exit code is 128 + the signal.

Real processes on the demo model (it streams at a human pace, so a reply is still
running when the signal arrives), a real history file, and a pty for the app."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from gemma_chat.history.store import HistoryStore

pytestmark = pytest.mark.slow

STORY = "Write a very long story about a lighthouse keeper."
LONG_REPLY = ("-n", "2000", "--no-repeat-guard", "--temperature", "1", "--seed", "3")


def _stored() -> list[tuple[str, str, str | None, bool]]:
    with HistoryStore() as store:
        (record,) = store.conversations()
        return [(m.role, m.text, m.stop_reason, m.partial) for m in store.messages(record.id)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_ask_keeps_the_partial_reply_on_a_signal(demo_path: Path, signum: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "ask", "--model", str(demo_path), *LONG_REPLY, STORY],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    streamed = b""
    deadline = time.monotonic() + 120
    while len(streamed) < 40:  # the reply is streaming
        assert time.monotonic() < deadline, "no reply streamed"
        chunk = os.read(child.stdout.fileno(), 4096)
        assert chunk, child.stderr.read() if child.stderr else "no output"
        streamed += chunk
    child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signum, err.decode()
    assert b"Traceback" not in err and b"internal error" not in err
    (question, reply) = _stored()
    assert question[:2] == ("user", STORY)
    role, text, stop_reason, partial = reply
    assert (role, stop_reason, partial) == ("model", "cancelled", True)
    # Everything that was printed is what was saved.
    assert len(text) >= 40 and (streamed + out).decode().strip() == text.strip()


# ------------------------------------------------------------------------ the app


def _open_terminal() -> tuple[int, int]:
    primary, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    return primary, terminal


def _read_until(primary: int, seen: bytearray, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, bytes(seen[-2000:])
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the app exited and the terminal closed
                return
            if not chunk:
                return
            seen += chunk


def _start_app(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    primary, terminal = _open_terminal()
    child = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm-256color"},
        close_fds=True,
        start_new_session=True,
    )
    os.close(terminal)
    return child, primary


def _finish(child: subprocess.Popen[bytes], primary: int, seen: bytearray) -> int:
    _read_until(primary, seen, lambda: child.poll() is not None, timeout=60)
    code = child.wait(timeout=60)
    _read_until(primary, seen, lambda: False, timeout=5)  # the last bytes written
    os.close(primary)
    return code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_the_app_keeps_the_partial_reply_and_the_terminal_on_a_signal(
    demo_path: Path, signum: int
) -> None:
    child, primary = _start_app(["--model", str(demo_path), *LONG_REPLY])
    seen = bytearray()
    try:
        # The input's hint once the model is loaded.
        _read_until(primary, seen, lambda: b"Message Gemma" in seen, timeout=120)
        os.write(primary, STORY.encode())
        _read_until(primary, seen, lambda: b"keeper." in seen, timeout=30)
        os.write(primary, b"\r")
        # The status bar shows the speed while a reply streams.
        _read_until(primary, seen, lambda: b"tok/s\xe2\x80\xa6" in seen, timeout=120)
        time.sleep(0.5)  # some text on screen
        assert b"\x1b[?1049h" in seen and b"\x1b[?1000h" in seen  # alt screen, mouse on
        at_signal = len(seen)
        child.send_signal(signum)
        code = _finish(child, primary, seen)
    finally:
        if child.poll() is None:
            child.kill()
    after = bytes(seen[at_signal:])
    assert code == 128 + signum, after[-2000:]
    assert b"\x1b[?1049l" in after and b"\x1b[?1000l" in after  # terminal given back
    assert b"Traceback" not in seen
    (question, reply) = _stored()
    assert question[:2] == ("user", STORY)
    role, text, stop_reason, partial = reply
    assert (role, stop_reason, partial) == ("model", "cancelled", True) and text.strip()


CRASHING_APP = """
import sys
from gemma_chat.tui.app import GemmaChatApp

def crash(self):
    raise RuntimeError("planted crash")

GemmaChatApp.action_help = crash  # F1 now crashes the app
from gemma_chat.cli import main
main(sys.argv[1:])
"""


def test_a_crashed_app_never_exits_0(tiny_models) -> None:
    primary, terminal = _open_terminal()
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_APP, "--model", str(tiny_models["runaway"].path)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm-256color"},
        close_fds=True,
        start_new_session=True,
    )
    os.close(terminal)
    seen = bytearray()
    try:
        _read_until(primary, seen, lambda: b"runaway.gguf" in seen, timeout=60)
        os.write(primary, b"\x1bOP")  # F1
        code = _finish(child, primary, seen)
    finally:
        if child.poll() is None:
            child.kill()
    assert b"planted crash" in seen
    assert code == 1
    assert b"\x1b[?1049l" in seen
