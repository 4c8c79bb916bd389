"""An absurd --ctx is refused before llama.cpp allocates anything, naming the memory it
needs; a value that would wrap llama.cpp's uint32 n_ctx is never passed on."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.models import loader
from gemma_chat.models.resolve import inspect_model
from gemma_chat.planning import hardware

GIB = 1024**3


def _limited_memory() -> None:
    # Without the check llama.cpp would try to allocate terabytes: fail fast instead of
    # swapping the machine (the test then fails on the exit code).
    resource.setrlimit(resource.RLIMIT_AS, (6 * GIB, 6 * GIB))


@pytest.mark.slow
@pytest.mark.parametrize("ctx", ["99999999999", "4294967552"], ids=["huge", "wraps-to-256"])
def test_an_absurd_ctx_is_one_line_naming_the_memory_needed(demo_path: Path, ctx: str) -> None:
    args = ["ask", "--model", str(demo_path), "--no-save", "-n", "4", "--ctx", ctx, "hi"]
    proc = subprocess.run(
        [sys.executable, "-m", "gemma_chat", *args],
        capture_output=True,
        timeout=300,
        preexec_fn=_limited_memory,
        env=os.environ.copy(),
    )
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert proc.stdout == b""
    assert len(err.splitlines()) == 1, err
    assert "cannot fit" in err and "TiB" in err and "free RAM" in err


def _free_ram(monkeypatch: pytest.MonkeyPatch, available: int) -> None:
    monkeypatch.setattr(hardware, "system_memory", lambda: hardware.Memory(available, available))


def test_the_plan_decides_against_the_free_memory(
    demo_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = inspect_model(demo_path)
    settings = Settings(ctx=32768)
    _free_ram(monkeypatch, 100 * 1024**2)
    with pytest.raises(UsageError, match=r"32768 tokens .*need 1\.07 GiB.*100 MiB of free RAM"):
        loader.check_context(settings, info, 32768, supported=False, gpus=[])
    _free_ram(monkeypatch, 64 * GIB)
    loader.check_context(settings, info, 32768, supported=False, gpus=[])


def test_no_value_that_wraps_is_passed_on_even_without_a_plan(
    demo_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = inspect_model(demo_path)

    def no_plan(*args: object, **kwargs: object) -> None:
        raise ModelError("cannot plan")

    monkeypatch.setattr(loader, "memory_plan", no_plan)
    n_ctx = 2**32 + 256
    with pytest.raises(UsageError, match=r"more than llama\.cpp can take"):
        loader.check_context(Settings(ctx=n_ctx), info, n_ctx, supported=False, gpus=[])
    loader.check_context(Settings(ctx=4096), info, 4096, supported=False, gpus=[])
