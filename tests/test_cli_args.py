"""Input a user can type never ends in "internal error" or a crash: arguments that are
not UTF-8, values llama.cpp would wrap or abort on, and paths no system accepts are one
line on stderr with exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli


def _one_usage_line(proc) -> str:
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1, err
    assert "internal error" not in err
    return err


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["ask", os.fsdecode(b"\xff")], "argument 2 is not valid UTF-8 text: \\xff"),
        (
            ["ask", "--system", os.fsdecode(b"caf\xe9"), "hi"],
            "argument 3 is not valid UTF-8 text: caf\\xe9",
        ),
        (
            ["--model", os.fsdecode(b"/tmp/\xfe.gguf"), "ask", "hi"],
            "argument 2 is not valid UTF-8 text: /tmp/\\xfe.gguf",
        ),
        (
            ["history", "search", os.fsdecode(b"\xff\x1b[2J")],
            "argument 3 is not valid UTF-8 text: \\xff\u241b[2J",
        ),
    ],
    ids=["question", "system", "model-path", "search-with-escape"],
)
def test_arguments_that_are_not_utf8_are_a_usage_error(args: list[str], shown: str) -> None:
    err = _one_usage_line(run_cli(*args, timeout=120))
    assert err == f"gemma-chat: error: {shown}"  # the bytes shown; an ESC never sent raw


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--threads",
            "99999999999",
            "threads (--threads): must be 512 or less, not 99999999999",
        ),
        ("--threads", "513", "must be 512 or less"),
        ("--top-k", "99999999999999", "top_k (--top-k): must be 2147483647 or less"),
    ],
    ids=["threads-wraps", "threads-over-ggml-max", "top-k-wraps"],
)
def test_counts_llama_cpp_would_wrap_or_abort_on_are_refused(
    option: str, value: str, message: str
) -> None:
    err = _one_usage_line(run_cli("ask", option, value, "--no-save", "-n", "2", "hi", timeout=120))
    assert message in err


@pytest.mark.parametrize("key", ["model", "models_dir", "model_paths", "aliases"])
def test_a_nul_in_a_config_path_is_a_usage_error(tmp_path: Path, key: str) -> None:
    value = '"a\\u0000b.gguf"'
    line = {"model_paths": f"{key} = [{value}]", "aliases": f"{key} = {{x = {value}}}"}
    config = tmp_path / "config.toml"
    config.write_text(line.get(key, f"{key} = {value}") + "\n")
    proc = run_cli("ask", "--no-save", "hi", env={"GEMMA_CHAT_CONFIG": str(config)})
    err = _one_usage_line(proc)
    assert "must not contain a NUL character" in err
