"""``$GEMMA_CHAT_THREADS``: the thread count when ``--threads`` and the config are silent
(the test suite sets it so that pytest-xdist workers do not contend; see conftest)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from gemma_chat.backend.local import default_threads
from gemma_chat.cli.run_settings import build_settings
from gemma_chat.errors import UsageError


def test_the_flag_wins_then_the_variable_then_the_config(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("threads = 4\n")
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    monkeypatch.delenv("GEMMA_CHAT_THREADS", raising=False)
    assert build_settings().threads == 4
    monkeypatch.setenv("GEMMA_CHAT_THREADS", "3")
    assert build_settings().threads == 3
    assert build_settings(threads=2).threads == 2


def test_unset_or_empty_means_every_core(monkeypatch) -> None:
    for value in (None, "", "  "):
        if value is None:
            monkeypatch.delenv("GEMMA_CHAT_THREADS", raising=False)
        else:
            monkeypatch.setenv("GEMMA_CHAT_THREADS", value)
        assert build_settings().threads is None
        assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("GEMMA_CHAT_THREADS", "1")
    assert default_threads() == 1


@pytest.mark.parametrize("value", ["0", "513", "two", "-1", "1.5", "٣", "9" * 40, "\x1b[2J"])
def test_a_bad_value_is_one_usage_line(monkeypatch, value: str) -> None:
    monkeypatch.setenv("GEMMA_CHAT_THREADS", value)
    with pytest.raises(UsageError, match=r"^GEMMA_CHAT_THREADS takes a number of threads"):
        build_settings()
    # Where settings are not built (a backend made directly), every core is used.
    assert default_threads() == len(os.sched_getaffinity(0))


def test_the_cli_refuses_a_bad_value_in_one_line_and_doctor_reports_it(demo_path) -> None:
    proc = run_cli("ask", "hi", env={"GEMMA_CHAT_THREADS": "\x1b[2Jmany"})
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "GEMMA_CHAT_THREADS" in err and "\x1b" not in err
    doctor = run_cli("doctor", "--json", env={"GEMMA_CHAT_THREADS": "many"})
    assert doctor.returncode == 0, doctor.stderr.decode()
    report = json.loads(doctor.stdout)
    assert "GEMMA_CHAT_THREADS" in report["config_error"]
    assert report["threads"]["used"] == len(os.sched_getaffinity(0))
    good = json.loads(run_cli("doctor", "--json", env={"GEMMA_CHAT_THREADS": "1"}).stdout)
    assert good["threads"]["setting"] == 1 and good["threads"]["used"] == 1
