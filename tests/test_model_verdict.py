"""A cached probe verdict belongs to one version of a file: a model replaced by a
malformed one with the same size and mtime is probed again, never loaded on the strength
of the old verdict (which would abort the process: exit 134, nothing on stderr)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import stories
from conftest import run_cli
from tinygemma import build_tiny_gemma2

from gemma_chat.files import file_version
from gemma_chat.models.gguf_meta import _cache_file
from gemma_chat.models.resolve import inspect_model


def _same_size_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A good tiny model and one that aborts llama.cpp, padded to the same size
    (bytes after the last tensor are ignored by the GGUF reader)."""
    good = build_tiny_gemma2(tmp_path / "good.gguf", stories.RUNAWAY).path
    bad = build_tiny_gemma2(tmp_path / "bad.gguf", stories.RUNAWAY, duplicate_token=True).path
    size = max(good.stat().st_size, bad.stat().st_size) + 64
    for path in (good, bad):
        with path.open("ab") as handle:
            handle.write(bytes(size - path.stat().st_size))
    return good, bad


def _replace_by_rename(target: Path, bad: Path) -> None:
    os.replace(bad, target)


def _rewrite_in_place(target: Path, bad: Path) -> None:
    with target.open("r+b") as handle:  # same inode, new contents
        handle.write(bad.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize(
    "replace", [_replace_by_rename, _rewrite_in_place], ids=["rename", "rewrite"]
)
def test_a_replaced_model_with_the_same_size_and_mtime_is_probed_again(
    tmp_path: Path, replace
) -> None:
    good, bad = _same_size_pair(tmp_path)
    model = tmp_path / "model.gguf"
    shutil.copyfile(good, model)
    assert inspect_model(model).architecture == "gemma2"  # probed once: a good verdict
    before = model.stat()

    replace(model, bad)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = model.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    proc = run_cli("ask", "--model", str(model), "--no-save", "hi", timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err)  # not 134 (SIGABRT)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "malformed" in lines[0], err


def test_file_version_changes_with_the_file_not_with_its_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 10)
    first = file_version(path)
    assert file_version(path) == first
    st = path.stat()
    other = tmp_path / "g"
    other.write_bytes(b"b" * 10)
    os.replace(other, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_version(path) != first


def test_the_gguf_metadata_cache_is_keyed_by_file_identity(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    st = path.stat()
    key = _cache_file(path)
    replacement = tmp_path / "n.gguf"
    replacement.write_bytes(b"GGUF" + b"\x01" * 60)
    os.replace(replacement, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _cache_file(path) != key
