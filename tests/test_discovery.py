"""Discovery, short names and ``gemma-chat models``, on real files laid out like a user's.

A temporary machine: a models directory, folders and files named in the config, aliases,
and a Hugging Face cache tree (``models--org--repo/snapshots/<commit>/file.gguf``
symlinks into ``blobs/``), holding copies of the tiny Gemma 2 models, split shards and
broken files. The demo model comes from the ``demo`` extra.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stories
from conftest import run_cli

from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.models.discovery import find_models, hf_hub_cache, list_models, record
from gemma_chat.models.resolve import resolve_model

RECORD_KEYS = {
    "name", "path", "source", "aliases", "repo", "assembled", "error", "architecture",
    "model_name", "size_label", "n_params", "quantization", "file_type", "context_length",
    "file_size", "shards", "n_tensors", "start_of_turn", "end_of_turn", "turn_tokens",
    "softcapping", "kind",
}  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the user's models dir and Hugging Face cache out of every test."""
    for name in ("GEMMA_CHAT_MODELS_DIR", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "models"  # <data dir>/models: the default
    folder.mkdir(parents=True)
    return folder


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, target))


def _hf_file(root: Path, repo: str, commit: str, name: str, source: Path | None) -> Path:
    """Put a file into a Hugging Face cache tree the way huggingface_hub lays it out."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    blob = repo_dir / "blobs" / f"{commit}-{name}"
    if source is not None:
        _copy(source, blob)
    link = repo_dir / "snapshots" / commit / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return link


def _set_ref(root: Path, repo: str, commit: str) -> None:
    refs = root / f"models--{repo.replace('/', '--')}" / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(commit)


@pytest.fixture
def machine(tmp_path: Path, models_dir: Path, tiny_models) -> dict[str, Path]:
    """Files in every source; returns the interesting paths by name."""
    runaway, loop = tiny_models["runaway"].path, tiny_models["loop"].path
    hf = tmp_path / "hf"
    files = {
        "alpha": _copy(runaway, models_dir / "alpha-Q4_K_M.gguf"),
        "nested": _copy(loop, models_dir / "org" / "nested.gguf"),
        "partial": _copy(runaway, models_dir / ".partial" / "hidden.gguf"),
        "cfg_file": _copy(loop, tmp_path / "elsewhere" / "cfg-file.gguf"),
        "cfg_dir_file": _copy(runaway, tmp_path / "cfgdir" / "in-cfg-dir.gguf"),
        "hf_new": _hf_file(hf, "org/repo", "c2", "hub-model.gguf", loop),
        "hf_old": _hf_file(hf, "org/repo", "c1", "hub-model.gguf", runaway),
        "hf_broken": _hf_file(hf, "org/repo", "c2", "gone.gguf", None),
    }
    _set_ref(hf, "org/repo", "c2")
    old = time.time() - 3600
    os.utime(files["hf_old"].parent, (old, old))
    # `pull` hard-links cached files into the models dir: one file, listed once.
    files["linked"] = _hf_file(hf, "org/other", "c9", "linked.gguf", runaway)
    os.link(files["linked"].resolve(), models_dir / "linked.gguf")
    (models_dir / "notes.txt").write_text("not a model")
    return files


def _settings(tmp_path: Path, **values: object) -> Settings:
    values.setdefault("model_paths", [str(tmp_path / "elsewhere" / "cfg-file.gguf")])
    return Settings.model_validate(values)


def test_every_source_in_order_each_file_once(tmp_path: Path, machine, demo_path) -> None:
    settings = _settings(
        tmp_path,
        model_paths=[
            str(machine["cfg_file"]),
            str(tmp_path / "cfgdir"),
            str(machine["alpha"]),  # already in the models dir
            str(tmp_path / "nowhere.gguf"),
        ],
        aliases={"nine": str(machine["alpha"]), "lost": str(tmp_path / "lost.gguf")},
    )
    entries = find_models(settings)
    listed = [(entry.name, entry.source) for entry in entries]
    assert listed == [
        ("nine", "models-dir"),
        ("linked", "models-dir"),
        ("nested", "models-dir"),
        ("cfg-file", "config"),
        ("in-cfg-dir", "config"),
        ("nowhere", "config"),
        ("lost", "alias"),
        ("gone", "hf-cache"),
        ("hub-model", "hf-cache"),
        ("demo", "demo"),
    ]
    by_name = {entry.name: entry for entry in entries}
    assert by_name["nine"].aliases == ("nine",) and by_name["nine"].stem == "alpha-Q4_K_M"
    assert "not found" in by_name["nowhere"].error
    assert "missing file" in by_name["lost"].error
    assert by_name["gone"].repo == "org/repo" and "broken link" in by_name["gone"].error
    assert by_name["demo"].path == demo_path and by_name["demo"].assembled


def test_the_hf_cache_lists_the_current_revision(tmp_path: Path, machine) -> None:
    entries = [e for e in find_models(_settings(tmp_path)) if e.source == "hf-cache"]
    assert [(e.name, e.path) for e in entries] == [
        ("gone", machine["hf_broken"]),
        ("hub-model", machine["hf_new"]),  # refs/main's snapshot, not the older one
    ]  # and org/other's linked.gguf is the models dir's linked.gguf: listed there


def test_listing_reads_metadata_and_keeps_going_past_broken_files(
    tmp_path: Path, models_dir: Path, tiny_models
) -> None:
    _copy(tiny_models["runaway"].path, models_dir / "good.gguf")
    (models_dir / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 40)
    (models_dir / "empty.gguf").write_bytes(b"")
    (models_dir / "cut.gguf").write_bytes(tiny_models["loop"].path.read_bytes()[:-64])
    entries = {e.name: e for e in list_models(Settings())}
    assert entries["good"].meta is not None and entries["good"].error is None
    for name in ("bad", "empty", "cut"):
        assert entries[name].meta is None and entries[name].error, name
        assert "\n" not in entries[name].error
    data = record(entries["good"])
    assert set(data) == RECORD_KEYS
    assert data["architecture"] == "gemma2" and data["context_length"] == 1024
    assert data["turn_tokens"] is True and data["softcapping"] is True
    assert (data["start_of_turn"], data["end_of_turn"]) == (106, 107)
    assert data["file_size"] == (models_dir / "good.gguf").stat().st_size
    assert record(entries["cut"])["file_size"] == (models_dir / "cut.gguf").stat().st_size


def test_split_models_list_once(tmp_path: Path, models_dir: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(models_dir / "big.gguf", "gemma2", split_max_tensors=1)
    for i in range(3):
        writer.add_tensor(f"t{i}", np.zeros((2, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    entries = [e for e in list_models(Settings()) if e.source == "models-dir"]
    assert [(e.name, e.path.name) for e in entries] == [("big", "big-00001-of-00003.gguf")]
    assert len(entries[0].meta.tensors) == 3 and len(entries[0].meta.shards) == 3
    assert resolve_model("big", settings=Settings()) == entries[0].path


def test_short_names(tmp_path: Path, machine, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, aliases={"nine": str(machine["alpha"])})
    assert resolve_model("nine", settings=settings) == machine["alpha"]
    assert resolve_model("alpha-Q4_K_M", settings=settings) == machine["alpha"]
    assert resolve_model("alpha-q4_k_m", settings=settings) == machine["alpha"]
    assert resolve_model("alpha-Q4_K_M.gguf", settings=settings) == machine["alpha"]
    assert resolve_model("cfg-file", settings=settings) == machine["cfg_file"]
    assert resolve_model("hub-model", settings=settings) == machine["hf_new"]
    # Paths keep working, found or not: a missing one is check_header's error later.
    assert resolve_model(str(machine["nested"]), settings=settings) == machine["nested"]
    assert resolve_model("./x/missing.gguf") == Path("./x/missing.gguf")
    assert resolve_model("missing.gguf", settings=settings) == Path("missing.gguf")
    monkeypatch.chdir(machine["nested"].parent)
    assert resolve_model("nested.gguf", settings=settings) == Path("nested.gguf")
    with pytest.raises(ModelError, match=r"no model named 'ninety'.*gemma-chat models"):
        resolve_model("ninety", settings=settings)


def test_an_ambiguous_name_lists_the_candidates(tmp_path: Path, machine, tiny_models) -> None:
    twin = _copy(tiny_models["loop"].path, tmp_path / "cfgdir" / "alpha-Q4_K_M.gguf")
    settings = _settings(tmp_path, model_paths=[str(tmp_path / "cfgdir")])
    with pytest.raises(UsageError, match="ambiguous") as caught:
        resolve_model("alpha-Q4_K_M", settings=settings)
    assert str(machine["alpha"]) in str(caught.value) and str(twin) in str(caught.value)
    # An alias settles it.
    settings = _settings(tmp_path, aliases={"alpha-Q4_K_M": str(twin)})
    assert resolve_model("alpha-Q4_K_M", settings=settings) == twin


def test_config_aliases_without_settings(
    tmp_path: Path, machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "config.toml"
    config.parent.mkdir()
    _copy(machine["alpha"], config.parent / "rel.gguf")
    config.write_text(f'[aliases]\nnine = "{machine["alpha"]}"\nrel = "rel.gguf"\n')
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    assert resolve_model("nine") == machine["alpha"]
    assert resolve_model("rel") == config.parent / "rel.gguf"  # relative to the config


@pytest.mark.slow
def test_the_demo_by_name(demo_path: Path) -> None:
    assert resolve_model("demo") == demo_path
    assert resolve_model("gemma-3-270m-q4_k_m", settings=Settings()) == demo_path


def test_hf_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hf_hub_cache() == tmp_path / "hf"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_hub_cache() == tmp_path / "xdg" / "huggingface" / "hub"


# ---- the command line -------------------------------------------------------------------


@pytest.mark.slow
def test_models_json_and_table(tmp_path: Path, machine, monkeypatch) -> None:
    (machine["alpha"].parent / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    models = json.loads(proc.stdout)["models"]
    assert all(set(model) == RECORD_KEYS for model in models)
    by_name = {model["name"]: model for model in models}
    assert by_name["alpha-Q4_K_M"]["quantization"] == "F16"
    assert by_name["broken"]["error"] and by_name["broken"]["architecture"] is None
    assert by_name["hub-model"]["repo"] == "org/repo"

    proc = run_cli("models", env={"PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "TURNS",
                                "SOFTCAP", "SOURCE", "PATH"]  # fmt: skip
    alpha = next(line for line in lines if line.startswith("alpha-Q4_K_M "))
    cells = alpha.split()[:1] + alpha.split()[2:]  # without the TYPE
    assert alpha.split()[1] == "base"
    assert cells[1:5] == ["gemma2", f"{by_name['alpha-Q4_K_M']['n_params'] / 1000:.3g}K", "F16",
                          "1024"] and cells[6:9] == ["KiB", "✓", "✓"]  # fmt: skip
    broken = lines.index(next(line for line in lines if line.startswith("broken ")))
    assert lines[broken + 1].startswith("  error: ") and "malformed" in lines[broken + 1]
    assert any(line.startswith("hub-model ") and "hf:org/repo" in line for line in lines)


@pytest.mark.slow
def test_models_info(tmp_path: Path, machine) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[aliases]\nnine = "{machine["alpha"]}"\n')
    env = {"GEMMA_CHAT_CONFIG": str(config)}
    proc = run_cli("models", "info", "nine", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"model", "metadata", "tensors", "n_ctx", "plan"}
    assert data["model"]["name"] == "nine" and data["model"]["aliases"] == ["nine"]
    assert data["metadata"]["gemma2.attn_logit_softcapping"] == 50.0
    assert data["metadata"]["tokenizer.ggml.tokens"]["array"] == "str"
    assert data["tensors"]["count"] == 24 and data["n_ctx"] == 1024
    plan = data["plan"]
    assert plan["n_ctx"] == 1024 and plan["weights"] == data["tensors"]["bytes"]
    assert plan["gpu_layers"] == 0 and plan["max_layers"] == 3 and plan["fits_ram"]

    planned = json.loads(
        run_cli("models", "info", "nine", "--ctx", "4000", "--json", env=env).stdout
    )
    assert planned["n_ctx"] == planned["plan"]["n_ctx"] == 4096
    assert planned["plan"]["kv_cache"] == 4 * plan["kv_cache"]

    text = run_cli("models", "info", "nine", env=env).stdout.decode()
    assert "turn tokens:    <start_of_turn> = 106, <end_of_turn> = 107" in text
    assert "gemma2.final_logit_softcapping = 30.0" in text
    assert "memory plan (n_ctx 1024):" in text and "fits in RAM" in text


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path: Path, machine, tiny_models) -> None:
    _copy(tiny_models["loop"].path, tmp_path / "cfgdir" / "alpha-Q4_K_M.gguf")
    config = tmp_path / "config.toml"
    config.write_text(f'model_paths = ["{tmp_path / "cfgdir"}"]\n')
    env = {"GEMMA_CHAT_CONFIG": str(config)}
    for args, code, words in [
        (("models", "info", "nope"), 1, "no model named 'nope'"),
        (("models", "info", "alpha-Q4_K_M"), 2, "ambiguous"),
        (("models", "info", str(machine["hf_broken"])), 1, "not found"),
        (("--model", "nope", "ask", "hi"), 1, "gemma-chat models"),
    ]:
        proc = run_cli(*args, env=env)
        err = proc.stderr.decode()
        assert proc.returncode == code, (args, err)
        assert words in err and len(err.strip().splitlines()) == 1, (args, err)


@pytest.mark.slow
def test_a_short_name_loads_the_model(models_dir: Path, tiny_models) -> None:
    _copy(tiny_models["runaway"].path, models_dir / "story-teller.gguf")
    proc = run_cli("ask", "A story", "--model", "story-teller", "--temp", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == stories.RUNAWAY_REPLY + "\n"


@pytest.mark.slow
def test_listing_does_not_assemble_the_demo(tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    proc = run_cli("models", "--json", env={"GEMMA_CHAT_CACHE_DIR": str(cache)})
    demo = json.loads(proc.stdout)["models"][-1]
    assert demo["name"] == "demo" and demo["assembled"] is False
    assert demo["architecture"] is None and not Path(demo["path"]).exists()


def test_a_file_name_that_is_not_utf8_is_listed(tmp_path: Path, models_dir: Path, tiny_models):
    odd = models_dir / os.fsdecode(b"we\xffird.gguf")
    _copy(tiny_models["runaway"].path, odd)
    _copy(tiny_models["loop"].path, models_dir / "plain.gguf")
    listed = {entry.path.name: entry for entry in list_models(Settings())}
    assert listed[odd.name].error is None and listed[odd.name].meta is not None
    assert listed["plain.gguf"].meta is not None


def test_the_reader_ignores_the_working_directory(tmp_path: Path, models_dir: Path, tiny_models):
    _copy(tiny_models["runaway"].path, models_dir / "story.gguf")
    trap = tmp_path / "cwd"
    trap.mkdir()
    (trap / "json.py").write_text("raise ImportError('the wrong json')\n")
    (trap / "gemma_chat").mkdir()
    (trap / "gemma_chat" / "__init__.py").write_text("raise ImportError('an old checkout')\n")
    proc = subprocess.run(
        # The console script: `python -m` would import the trap itself in this process.
        [str(Path(sys.executable).with_name("gemma-chat")), "models", "--json"],
        cwd=trap,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (story,) = [e for e in json.loads(proc.stdout)["models"] if e["name"] == "story"]
    assert story["error"] is None and story["architecture"] == "gemma2"


def test_an_alias_wins_over_a_folder_of_that_name(
    tmp_path: Path, machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nine").mkdir()
    settings = _settings(tmp_path, aliases={"nine": str(machine["alpha"])})
    assert resolve_model("nine", settings=settings) == machine["alpha"]


def test_the_models_folder_wins_a_name_shared_with_the_hf_cache(
    tmp_path: Path, models_dir: Path, tiny_models
) -> None:
    pulled = _copy(tiny_models["runaway"].path, models_dir / "gemma-2-9b-it-Q4_K_M.gguf")
    _hf_file(tmp_path / "hf", "other/repo", "c1", pulled.name, tiny_models["loop"].path)
    assert resolve_model("gemma-2-9b-it-Q4_K_M", settings=Settings()) == pulled


def test_a_relative_models_dir_is_relative_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "config.toml"
    config.parent.mkdir()
    config.write_text('models_dir = "mine"\n')
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    from gemma_chat.config.config_file import load_config

    assert load_config()["models_dir"] == str(config.parent / "mine")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_in_the_hf_cache_refs_cannot_hang_models(tmp_path: Path, tiny_models) -> None:
    """The Hugging Face cache is a folder the user chooses (HF_HUB_CACHE); a FIFO at
    ``refs/main`` (nothing ever writes it) blocked the unbounded read forever. Now it
    counts as no ref: the snapshot is still listed, by age."""
    hf = tmp_path / "hf"
    link = _hf_file(hf, "org/repo", "c2", "hub-model.gguf", tiny_models["loop"].path)
    refs = hf / "models--org--repo" / "refs"
    refs.mkdir(parents=True)
    os.mkfifo(refs / "main")
    os.mkfifo(refs / "dev")
    entries = [e for e in find_models(_settings(tmp_path)) if e.source == "hf-cache"]
    assert [(e.name, e.path) for e in entries] == [("hub-model", link)]
    proc = run_cli("models", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hub-model" in [entry["name"] for entry in json.loads(proc.stdout)["models"]]
