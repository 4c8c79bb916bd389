"""``bench/gpu_check.py``: one line and exit 0 without a GPU, and a rehearsal of every
step on the CPU, so the script is known to run before the day a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEMMA_CHAT_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
        check=False,
    )


@pytest.mark.slow
def test_without_a_gpu_it_says_so_in_one_line(tmp_path: Path) -> None:
    from gemma_chat.backend.local import gpu_offload_supported

    if gpu_offload_supported():
        pytest.skip("this build offloads to a GPU: the check would run for real")
    proc = _run("--out", str(tmp_path / "report.json"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gpu_check: no GPU to check: ")
    assert proc.stdout.count("\n") == 1
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
def test_a_rehearsal_runs_every_step_on_the_cpu(demo_path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["--rehearse", "--model", str(demo_path), "--tokens", "8", "--rounds", "1"]
    proc = _run(*args, "--ctx", "2048", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["rehearsal"] is True
    assert report["model"] == demo_path.name
    assert report["decode_tok_s"]["gpu"] > 0 and report["decode_tok_s"]["cpu"] > 0
    assert report["prompt_tok_s"]["gpu"] > 0 and report["prompt_tok_s"]["cpu"] > 0
    # The conversation is kept across GPU -> CPU -> GPU: three questions, three replies.
    assert report["toggle"]["turns"] == 6
    assert [r["stop"] for r in report["toggle"]["replies"]] != []
    assert len(report["toggle"]["replies"]) == 3
    assert report["tiny_checks"]["passed"], report["tiny_checks"]
    assert "passed" in report["tiny_checks"]["summary"][0]
    table = proc.stdout
    for row in ("rehearsal (CPU for GPU)", "decode tok/s GPU / CPU", "tiny-model checks"):
        assert row in table


def test_the_gpu_checks_include_kv_reuse_and_the_stop_rules() -> None:
    """The README says the check runs the tiny models' stop-rule and KV-reuse tests on
    the GPU: its pytest selection must hold both (it once held no KV-reuse test)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "--collect-only", *gpu_check.TINY_CHECKS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    collected = proc.stdout
    assert "test_context.py::test_follow_up_turns_evaluate_only_new_tokens" in collected
    assert "test_engine_stops.py::test_max_tokens" in collected
    assert "test_speculative.py::test_cancel_mid_draft_keeps_only_what_was_shown" in collected
