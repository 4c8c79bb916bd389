"""Base or instruction-tuned: the rules of :mod:`gemma_chat.models.kind`, then real GGUF
files (tiny Gemma 2 models written with ``gguf``, and the demo model) read both ways the
app reads them: llama.cpp's probe (the app, ``doctor``) and the metadata reader
(``models``, the picker), plus ``gemma-chat models`` itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from tinygemma import build_tiny_gemma2

from gemma_chat.models.gguf_meta import read_gguf_meta
from gemma_chat.models.kind import classify, kind_of_metadata, pull_hint
from gemma_chat.models.loader import RemoteModelInfo
from gemma_chat.models.resolve import inspect_model

TEMPLATE = "{% for message in messages %}<start_of_turn>{{ message['content'] }}{% endfor %}"


@pytest.mark.parametrize(
    ("finetune", "names", "template", "kind"),
    [
        ("it", ("Gemma 2 2b",), None, "instruct"),
        ("pt", ("gemma-2-2b-it",), True, "base"),  # general.finetune wins over the name
        (None, ("Gemma 2 9b It",), False, "instruct"),
        (None, (None, "gemma-2-9b-it-Q4_K_M.gguf"), False, "instruct"),
        (None, ("Gemma 2 9b", "gemma-2-9b-pt-Q8_0.gguf"), True, "base"),
        (None, ("Gemma 3 270m", "gemma-3-270m-q4_k_m.gguf"), True, "instruct"),
        (None, ("Gemma 3 270m", "gemma-3-270m-q4_k_m.gguf"), False, "base"),
        (None, ("gemma-2-2b-Q4_K_M",), None, "unknown"),  # nothing read: unknown
        # "it" only as a whole word: "Q4_K_M", "kit", "writer" say nothing.
        (None, ("kit-writer-Q4_K_M",), False, "base"),
    ],
)
def test_the_rules(finetune, names, template, kind) -> None:
    assert classify(finetune=finetune, names=names, chat_template=template).kind == kind


def test_a_server_model_is_known_by_its_id_only() -> None:
    assert RemoteModelInfo("google/gemma-2-27b-it", "http://h/v1", 8192).kind.kind == "instruct"
    assert RemoteModelInfo("gemma2-27b-raw", "http://h/v1", 8192).kind.kind == "unknown"


def test_pull_hint_only_when_every_model_is_base() -> None:
    assert pull_hint([]) is None
    assert pull_hint(["base", "instruct"]) is None
    assert pull_hint(["base", "unknown"]) is None
    hint = pull_hint(["base", "base"])
    assert hint and "gemma-chat pull gemma2:2b" in hint and "--model gemma-2-2b-it-Q4_K_M" in hint


@pytest.fixture(scope="module")
def tiny_kinds(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kinds")
    script = ("▁Hi", "<end_of_turn>")
    return {
        "finetune": build_tiny_gemma2(
            folder / "plain.gguf", script, metadata={"general.finetune": "it"}
        ).path,
        "template": build_tiny_gemma2(
            folder / "templated.gguf", script, metadata={"tokenizer.chat_template": TEMPLATE}
        ).path,
        "name": build_tiny_gemma2(folder / "tiny.gguf", script, name="Tiny Gemma 2 It").path,
        "base": build_tiny_gemma2(folder / "tiny-base-model.gguf", script).path,
    }


@pytest.mark.parametrize(
    ("which", "kind"),
    [("finetune", "instruct"), ("template", "instruct"), ("name", "instruct"), ("base", "base")],
)
def test_real_files_both_readers(tiny_kinds, which: str, kind: str) -> None:
    path = tiny_kinds[which]
    meta = read_gguf_meta(path, use_cache=False)
    assert kind_of_metadata(meta.kv, path.name).kind == kind
    assert inspect_model(path, use_cache=False).kind.kind == kind  # llama.cpp's probe


def test_the_demo_model_is_base(demo_path: Path) -> None:
    kind = inspect_model(demo_path).kind
    assert kind.kind == "base" and "no chat template" in kind.reason


@pytest.mark.slow
def test_models_has_a_type_column_and_a_pull_hint(tmp_path: Path, demo_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    build_tiny_gemma2(models / "tiny-base.gguf", ("▁Hi",))
    proc = run_cli("models", env={"PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NAME", "TYPE", "ARCH"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith(" ")}
    assert rows == {"tiny-base": "base", "demo": "base"}
    assert "only base models found" in proc.stderr.decode()
    assert "gemma-chat pull gemma2:2b" in proc.stderr.decode()

    build_tiny_gemma2(models / "tiny-chat-it.gguf", ("▁Hi",))
    proc = run_cli("models", env={"PYTHONIOENCODING": "utf-8"})
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.decode().splitlines()[1:]}
    assert rows["tiny-chat-it"] == "instruct"
    assert b"only base models" not in proc.stderr
