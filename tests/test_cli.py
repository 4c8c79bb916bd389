"""``gemma-chat ask`` / ``prompt`` / the bare command, end to end in subprocesses on real
llama.cpp: output streams, exit codes, one-line errors, no traceback, no llama.cpp log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import stories
from conftest import run_cli
from tinygemma import build_tiny_gemma2

pytestmark = pytest.mark.slow


def start_long_ask(question: str) -> subprocess.Popen[bytes]:
    """Start a reply on the demo model that would run for a long time."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemma_chat",
            "ask",
            question,
            "--plain",
            "--no-repeat-guard",
            "-n",
            "3000",
            "--seed",
            "5",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def one_line_error(proc: subprocess.CompletedProcess[bytes], code: int, text: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert text in err
    assert "Traceback" not in err
    assert proc.stdout == b""


def test_ask_demo_end_to_end(demo_path) -> None:
    proc = run_cli("ask", "Why is the sky blue?", "--seed", "3", "-n", "24", "--stats")
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.strip() and out.endswith("\n")
    # stderr carries only the stats line: no llama.cpp log.
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stats: gemma-3-270m-q4_k_m.gguf"), err
    for part in ("prompt ", "evaluated ", "generated ", "TTFT ", "tok/s", "stop: ", "CPU ("):
        assert part in lines[0]


def test_ask_json_fields_and_seed_reproducibility(demo_path) -> None:
    runs = [
        json.loads(run_cli("ask", "Say hi", "--json", "--seed", "11", "-n", "16").stdout)
        for _ in range(2)
    ]
    result = runs[0]
    for key in (
        "text",
        "stop_reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "ttft_s",
        "tokens_per_s",
        "gpu_layers",
        "dropped_turns",
        "architecture",
        "context_length",
        "device",
    ):
        assert key in result
    assert result["architecture"] == "gemma3" and result["context_length"] == 32768
    assert result["n_ctx"] == 8192 and result["device"] == "cpu" and result["gpu_layers"] == 0
    assert runs[0]["text"] == runs[1]["text"] and runs[0]["seed"] == 11


def test_gemma2_runaway_stops_over_the_cli(tiny_models) -> None:
    path = str(tiny_models["runaway"].path)
    proc = run_cli("ask", "A story", "--model", path, "--temp", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == stories.RUNAWAY_REPLY + "\n"
    result = json.loads(run_cli("ask", "A story", "-m", path, "--json").stdout)
    assert result["text"] == stories.RUNAWAY_REPLY
    assert result["stop_reason"] == "end_of_turn"
    assert result["architecture"] == "gemma2"


def test_piped_text_and_question_layout(tiny_models) -> None:
    path = str(tiny_models["runaway"].path)
    proc = run_cli("prompt", "summarise this", "-m", path, "--json", stdin=b"my notes\n")
    text = json.loads(proc.stdout)["text"]
    assert text == (
        "<bos><start_of_turn>user\nmy notes\n\nsummarise this<end_of_turn>\n<start_of_turn>model\n"
    )
    proc = run_cli("prompt", "-m", path, "--system", "SYS", stdin=b"question from a pipe")
    assert proc.stdout.decode().startswith(
        "<bos><start_of_turn>user\nSYS\n\nquestion from a pipe<end_of_turn>"
    )


def test_bare_command_with_a_pipe_behaves_like_ask(tiny_models) -> None:
    proc = run_cli("-m", str(tiny_models["new_turn"].path), "--json", stdin=b"hello")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stop_reason"] == "new_turn"


def test_prompt_json_tokens(tiny_models) -> None:
    proc = run_cli("prompt", "<end_of_turn>hi", "-m", str(tiny_models["runaway"].path), "--json")
    tokens = json.loads(proc.stdout)["tokens"]
    assert [t["id"] for t in tokens if t["control"]] == [2, 106, 107, 106]
    assert all(set(t) == {"id", "piece", "control"} for t in tokens)


@pytest.mark.parametrize(
    ("stdin", "args", "code", "message"),
    [
        (b"caf\xe9 latin-1", ["ask"], 2, "not valid UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["ask"], 2, "binary data"),
        (b"", ["ask"], 2, "empty prompt"),
        (b"  \n\n ", ["ask"], 2, "empty prompt"),
        (b"", ["ask", "--bogus"], 2, "No such option: --bogus"),
        (b"", ["ask", "hi", "--temp", "9"], 2, "temperature"),
        (b"", ["ask", "hi", "--gpu-layers", "lots"], 2, "--gpu-layers"),
        (b"", ["ask", "hi", "-m", "/nonexistent/model.gguf"], 1, "model file not found"),
    ],
    ids=[
        "latin1",
        "binary",
        "empty",
        "blank",
        "bad-option",
        "bad-value",
        "bad-layers",
        "missing-model",
    ],
)
def test_bad_input_is_one_line(stdin: bytes, args: list[str], code: int, message: str) -> None:
    one_line_error(run_cli(*args, stdin=stdin), code, message)


def test_stdin_larger_than_the_context(tiny_models) -> None:
    proc = run_cli(
        "ask",
        "-m",
        str(tiny_models["runaway"].path),
        "--ctx",
        "256",
        "--long",
        "refuse",
        stdin=b"word " * 3000,
    )
    one_line_error(proc, 1, "too long")


def test_bad_model_files_over_the_cli(tmp_path, tiny_models) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    one_line_error(run_cli("ask", "hi", "-m", str(text)), 1, "not a GGUF model file")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_models["runaway"].path.read_bytes()[:5000])
    one_line_error(run_cli("ask", "hi", "-m", str(truncated)), 1, "truncated or corrupt")
    dup = build_tiny_gemma2(tmp_path / "dup.gguf", ("▁Hi",), duplicate_token=True)
    proc = run_cli("ask", "hi", "-m", str(dup.path))
    one_line_error(proc, 1, "malformed")
    assert proc.returncode not in (134, -6, 139, -11)


def test_debug_shows_llama_log_and_traceback(tmp_path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    proc = run_cli("ask", "hi", "-m", str(text), "--debug")
    assert proc.returncode == 1 and b"Traceback" in proc.stderr


def test_gpu_request_on_a_cpu_build_warns_and_runs_on_cpu(tiny_models) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp build has GPU support")
    proc = run_cli("ask", "hi", "-m", str(tiny_models["runaway"].path), "--gpu", "--json")
    assert proc.returncode == 0
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and "no GPU support" in err[0] and "-DGGML_CUDA=on" in err[0]
    result = json.loads(proc.stdout)
    assert result["device"] == "cpu" and result["gpu_layers"] == 0


def test_ctrl_c_keeps_what_was_printed_and_exits_130(demo_path) -> None:
    proc = start_long_ask("Count to a thousand")
    first = proc.stdout.read(1)  # the reply has started streaming
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert first and (first + rest).strip()
    assert b"Traceback" not in err


@pytest.mark.parametrize("delay", [0.5, 0.8, 1.1])
def test_ctrl_c_at_any_moment_exits_130(demo_path, delay: float) -> None:
    # Whether SIGINT lands while the CLI imports, during the probe, the model load or the
    # reply, the run ends with 130 and no ignored-exception noise. (The interpreter's own
    # first ~0.1 s of start-up, before any gemma-chat code runs, cannot be covered.)
    proc = start_long_ask("Count")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Exception ignored" not in err and b"Traceback" not in err


def test_options_before_the_command_count(tiny_models) -> None:
    path = str(tiny_models["new_turn"].path)
    proc = run_cli("--model", path, "--json", "ask", "hi")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stop_reason"] == "new_turn"
    proc = run_cli("--model", "/nonexistent.gguf", "ask", "hi")
    one_line_error(proc, 1, "model file not found")


def test_empty_model_option_is_a_usage_error() -> None:
    one_line_error(run_cli("ask", "hi", "--model", ""), 2, "--model needs a path")


def test_nul_bytes_after_the_first_8k_are_binary() -> None:
    one_line_error(run_cli("ask", stdin=b"a" * 9000 + b"\x00" * 100), 2, "binary data")


def test_huge_stdin_is_refused_before_tokenizing(tiny_models) -> None:
    start = time.monotonic()
    proc = run_cli(
        "ask",
        "-m",
        str(tiny_models["runaway"].path),
        "--ctx",
        "256",
        "--long",
        "refuse",
        stdin=b"word " * 200_000,
    )
    one_line_error(proc, 1, "bytes cannot fit in a context of 256")
    assert time.monotonic() - start < 30


def test_bare_command_on_a_terminal_opens_the_app(tiny_models) -> None:
    import pty
    import select

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "--model", str(tiny_models["runaway"].path)],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "xterm"},
        close_fds=True,
    )
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 60
    while b"runaway.gguf" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(main_fd, 65536)
            except OSError:
                break
    assert b"runaway.gguf" in seen  # the status bar shows the loaded model
    os.write(main_fd, b"\x11")  # Ctrl+Q
    assert proc.wait(timeout=30) == 0
    os.close(main_fd)


@pytest.mark.slow
def test_version_names_gemma_chat_llama_cpp_python_and_the_build() -> None:
    import llama_cpp

    from gemma_chat.backend.build_info import llama_backends

    for flag in ("--version", "-V"):
        proc = run_cli(flag)
        assert proc.returncode == 0 and proc.stderr == b""
        lines = proc.stdout.decode().splitlines()
        build = "GPU build" if llama_cpp.llama_supports_gpu_offload() else "CPU-only build"
        assert lines == [
            "gemma-chat 0.1.0",
            f"llama-cpp-python {llama_cpp.__version__} ({build}; backends: "
            f"{', '.join(llama_backends())})",
        ]
