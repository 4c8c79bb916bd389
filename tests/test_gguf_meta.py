"""The fast GGUF metadata reader: ggml's parser in a child process, cached per file version.

Values are checked against the ``gguf`` package's reader on real files (the tiny Gemma 2
models, and synthetic GGUFs written with ``gguf.GGUFWriter``), bad files must each give a
one-line ``ModelError`` without disturbing the rest of a batch, and a reader that really
aborts or hangs costs only the file it was reading.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import stories
from tinygemma import build_tiny_gemma2

from gemma_chat.errors import ModelError
from gemma_chat.models import gguf_meta
from gemma_chat.models.gguf_meta import ArraySummary, read_gguf_meta, read_many


@pytest.fixture(autouse=True)
def own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The cache is part of what is tested: never share it with other tests.
    monkeypatch.setenv("GEMMA_CHAT_CACHE_DIR", str(tmp_path / "cache"))


def _expected_kv(reader: gguf.GGUFReader) -> dict[str, object]:
    expected: dict[str, object] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            item, n = field.types[-1], len(field.data)
            limit = 64 if item == gguf.GGUFValueType.STRING else 1024
            if n > limit:
                expected[key] = n
                continue
        expected[key] = field.contents()
    return expected


@pytest.mark.parametrize("options", [{}, {"softcap": False}, {"turn_tokens": False}])
def test_values_match_the_gguf_package(tmp_path: Path, options: dict) -> None:
    model = build_tiny_gemma2(tmp_path / "m.gguf", stories.RUNAWAY, **options)
    meta = read_gguf_meta(model.path)
    reader = gguf.GGUFReader(model.path)

    got = {k: (v.n if isinstance(v, ArraySummary) else v) for k, v in meta.kv.items()}
    assert got == _expected_kv(reader)
    assert [t.name for t in meta.tensors] == [t.name for t in reader.tensors]
    for mine, theirs in zip(meta.tensors, reader.tensors, strict=True):
        assert mine.ggml_type == int(theirs.tensor_type)
        assert mine.type_name == theirs.tensor_type.name.lower()
        assert mine.n_bytes == int(theirs.n_bytes)
        assert mine.n_elements == int(theirs.n_elements)
        assert mine.shape == tuple(int(d) for d in theirs.shape)
    assert meta.file_size == model.path.stat().st_size
    assert meta.n_params == sum(int(t.n_elements) for t in reader.tensors)
    assert meta.architecture == "gemma2" and meta.quantization == "F16"
    assert meta.softcapping is options.get("softcap", True)
    if options.get("turn_tokens", True):
        assert meta.turn_tokens == {
            "<start_of_turn>": model.id("<start_of_turn>"),
            "<end_of_turn>": model.id("<end_of_turn>"),
        }
    else:
        assert meta.turn_tokens == {}


@pytest.mark.slow
def test_demo_model(demo_path: Path) -> None:
    meta = read_gguf_meta(demo_path, use_cache=False)
    assert meta.architecture == "gemma3" and meta.kv["general.size_label"] == "270M"
    assert meta.quantization == "Q4_K_M" and meta.arch_value("context_length") == 32768
    assert meta.turn_tokens == {"<start_of_turn>": 105, "<end_of_turn>": 106}
    assert meta.softcapping is None  # only Gemma 2 soft-caps
    assert meta.kv["tokenizer.ggml.tokens"] == ArraySummary("str", 262144)
    assert meta.kv["tokenizer.ggml.scores"] == ArraySummary("f32", 262144)
    assert len(meta.tensors) == 236 and meta.file_size == demo_path.stat().st_size
    embd = next(t for t in meta.tensors if t.name == "token_embd.weight")
    assert embd.shape == (640, 262144) and embd.type_name == "q8_0"
    assert meta.n_params == sum(t.n_elements for t in meta.tensors) == 268_098_176
    # The tensor data fills the file after the header, so the sizes are the real ones.
    assert meta.file_size - meta.tensor_bytes < 8 << 20


def _write_gguf(path: Path, build, tensors: int = 1, **writer_options) -> None:
    writer = gguf.GGUFWriter(path, "gemma2", **writer_options)
    build(writer)
    for i in range(tensors):
        writer.add_tensor(f"t{i}", np.full((4, 8), i, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_arrays_kept_or_summarized(tmp_path: Path) -> None:
    def build(writer: gguf.GGUFWriter) -> None:
        writer.add_array("gemma2.attention.head_count_kv", [8, 4] * 21)  # per layer
        writer.add_array("big.numbers", list(range(2000)))
        writer.add_array("few.strings", ["a", "b", "c"])
        writer.add_array("many.strings", [f"s{i}" for i in range(65)])
        writer.add_array("flags", [True, False])
        writer.add_float32("odd.value", math.nan)
        writer.add_string("text", "caf\u00e9 \u4e16\u754c")

    _write_gguf(tmp_path / "a.gguf", build)
    kv = read_gguf_meta(tmp_path / "a.gguf").kv
    assert kv["gemma2.attention.head_count_kv"] == [8, 4] * 21
    assert kv["big.numbers"] == ArraySummary("i32", 2000)
    assert kv["few.strings"] == ["a", "b", "c"]
    assert kv["many.strings"] == ArraySummary("str", 65)
    assert kv["flags"] == [True, False]
    assert kv["odd.value"] == "nan"  # JSON has no NaN
    assert kv["text"] == "caf\u00e9 \u4e16\u754c"


def test_split_model_is_read_whole(tmp_path: Path) -> None:
    _write_gguf(
        tmp_path / "model.gguf",
        lambda w: w.add_uint32("gemma2.context_length", 8192),
        tensors=5,
        split_max_tensors=2,
    )
    shards = sorted(tmp_path.glob("model-*.gguf"))
    assert shards[0].name == "model-00001-of-00003.gguf"
    meta = read_gguf_meta(shards[0])
    assert [t.name for t in meta.tensors] == ["t0", "t1", "t2", "t3", "t4"]
    assert meta.shards == tuple(shards)
    assert meta.file_size == sum(p.stat().st_size for p in shards)

    shards[2].unlink()
    with pytest.raises(ModelError, match=r"split model model-00001-of-00003\.gguf: .*not found"):
        read_gguf_meta(shards[0])


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "empty": b"",
        "garbage": os.urandom(4096),
        "magic only": b"GGUF",
        "random header": b"GGUF\x03\x00\x00\x00" + os.urandom(4096),
        "cut in the metadata": data[:3000],
        "cut in the tensor data": data[:-100],
        "bad version": b"GGUF\x09\x00\x00\x00" + data[8:],
    }
    paths = {}
    for label, content in files.items():
        path = folder / f"{label.replace(' ', '_')}.gguf"
        path.write_bytes(content)
        paths[label] = path
    (folder / "folder.gguf").mkdir()
    paths["a folder"] = folder / "folder.gguf"
    paths["missing"] = folder / "missing.gguf"
    return paths


def test_bad_files_fail_alone_with_one_line(tmp_path: Path, tiny_models) -> None:
    good = tiny_models["runaway"].path
    bad = _bad_files(tmp_path, good)
    results = read_many([good, *bad.values(), good])
    assert not isinstance(results[good], ModelError)
    reasons = {label: results[path] for label, path in bad.items()}
    for label, error in reasons.items():
        assert isinstance(error, ModelError), label
        assert "\n" not in str(error) and str(error), label
    assert "not a GGUF" in str(reasons["garbage"])
    assert "truncated" in str(reasons["cut in the metadata"])
    assert "truncated" in str(reasons["cut in the tensor data"])
    assert "version" in str(reasons["bad version"])
    assert "not found" in str(reasons["missing"])
    assert "directory" in str(reasons["a folder"])


def test_child_prints_one_json_line_per_file(tmp_path: Path, tiny_models) -> None:
    garbage = tmp_path / "g.gguf"
    garbage.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    good = tiny_models["runaway"].path
    proc = subprocess.run(
        [sys.executable, "-m", "gemma_chat.models.gguf_meta", str(good), str(garbage)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == ""  # ggml's log is captured, not printed
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["kv"]["general.architecture"] == "gemma2" and "error" not in first
    assert set(second) == {"error"}


CRASHING_CHILD = """
import os, sys, pathlib
from gemma_chat.models.gguf_meta import _child
for name in sys.argv[1:]:
    if pathlib.Path(name).name == "crash.gguf":
        os.abort()  # a real SIGABRT, as a GGML_ASSERT would give
    if pathlib.Path(name).name == "hang.gguf":
        import time; time.sleep(60)
    _child([name])
"""


def test_a_crash_costs_only_the_file_being_read(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tiny_models["runaway"].path
    other = shutil.copy(tiny_models["loop"].path, tmp_path / "other.gguf")
    crash = shutil.copy(good, tmp_path / "crash.gguf")
    monkeypatch.setattr(gguf_meta, "CHILD_COMMAND", (sys.executable, "-c", CRASHING_CHILD))
    results = read_many([good, Path(crash), Path(other)])
    assert results[good].arch_value("context_length") == 1024
    assert results[Path(other)].arch_value("context_length") == 512  # read by a new child
    error = str(results[Path(crash)])
    assert "the GGUF reader crashed on it (signal 6)" in error and "\n" not in error
    # A crash is not cached as a verdict: a later read tries again.
    monkeypatch.setattr(gguf_meta, "CHILD_COMMAND", (sys.executable, "-c", "pass"))
    with pytest.raises(ModelError, match="gave no answer"):
        read_gguf_meta(Path(crash))


@pytest.mark.slow
def test_a_hanging_reader_times_out(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = Path(shutil.copy(tiny_models["runaway"].path, tmp_path / "hang.gguf"))
    monkeypatch.setattr(gguf_meta, "CHILD_COMMAND", (sys.executable, "-c", CRASHING_CHILD))
    monkeypatch.setattr(gguf_meta, "READ_TIMEOUT_S", 1)
    with pytest.raises(ModelError, match="took longer than 1 s"):
        read_gguf_meta(hang)


def test_results_are_cached_per_file_version(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(shutil.copy(tiny_models["runaway"].path, tmp_path / "m.gguf"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(path.read_bytes()[:-100])
    first = read_gguf_meta(path)
    with pytest.raises(ModelError, match="truncated"):
        read_gguf_meta(broken)
    # With no working reader, only cached answers can come back.
    monkeypatch.setattr(gguf_meta, "CHILD_COMMAND", (sys.executable, "-c", "pass"))
    assert read_gguf_meta(path) == first
    with pytest.raises(ModelError, match="truncated"):
        read_gguf_meta(broken)
    # A new version of the file (its mtime changes) is read again.
    os.utime(path, ns=(1, 1))
    with pytest.raises(ModelError, match="gave no answer"):
        read_gguf_meta(path)
    with pytest.raises(ModelError, match="gave no answer"):
        read_gguf_meta(broken, use_cache=False)


NO_LIBRARY_CHILD = """
import sys, pathlib
from gemma_chat.models import gguf_meta, gguf_native
gguf_native.library_path = lambda: pathlib.Path("/nonexistent/libggml-base.so")
sys.exit(gguf_meta._child(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("script", "words"),
    [
        (NO_LIBRARY_CHILD, "cannot load ggml's GGUF reader"),
        ("import no_such_module", "the GGUF reader failed: ModuleNotFoundError"),
    ],
)
def test_a_broken_reader_fails_every_file_at_once(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch, script: str, words: str
) -> None:
    files = [Path(shutil.copy(tiny_models["runaway"].path, tmp_path / f"{i}.gguf")) for i in "ab"]
    monkeypatch.setattr(gguf_meta, "CHILD_COMMAND", (sys.executable, "-c", script))
    results = read_many(files)
    for path in files:
        assert isinstance(results[path], ModelError) and words in str(results[path])
    # Not the files' fault, so nothing was cached against them.
    monkeypatch.setattr(
        gguf_meta, "CHILD_COMMAND", (sys.executable, "-m", "gemma_chat.models.gguf_meta")
    )
    assert read_gguf_meta(files[0]).architecture == "gemma2"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_in_place_of_a_cached_result_is_read_again(tmp_path: Path, tiny_models) -> None:
    """The cache folder is the user's ($GEMMA_CHAT_CACHE_DIR): a FIFO where a cached
    result would be blocked the unbounded read forever; it is now a cache miss."""
    path = Path(shutil.copy(tiny_models["runaway"].path, tmp_path / "m.gguf"))
    cache = gguf_meta._cache_file(path)
    assert cache is not None
    cache.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(cache)
    assert read_gguf_meta(path).architecture == "gemma2"
