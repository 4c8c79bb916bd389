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


def test_the_flag_wins_over_a_bad_variable(monkeypatch) -> None:
    # --threads sets the count, so the variable is not read: a stale or bad value in the
    # environment must not refuse a command line that says what it wants.
    monkeypatch.setenv("GEMMA_CHAT_THREADS", "many")
    assert build_settings(threads=2).threads == 2


def test_doctor_names_where_the_thread_count_comes_from(demo_path, tmp_path: Path) -> None:
    from_env = run_cli("doctor", env={"GEMMA_CHAT_THREADS": "1"})
    assert "gemma-chat uses   1 threads (GEMMA_CHAT_THREADS)" in from_env.stdout.decode()
    config = tmp_path / "config.toml"
    config.write_text("threads = 1\n")
    from_config = run_cli(
        "doctor", env={"GEMMA_CHAT_THREADS": "", "GEMMA_CHAT_CONFIG": str(config)}
    )
    assert "gemma-chat uses   1 threads (config file)" in from_config.stdout.decode()


def test_doctor_keeps_the_config_when_only_the_variable_is_bad(demo_path, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("ctx = 1024\n")
    env = {"GEMMA_CHAT_THREADS": "many", "GEMMA_CHAT_CONFIG": str(config)}
    proc = run_cli("doctor", "--json", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["model"]["n_ctx"] == 1024  # the config file still applies
    step = next(s for s in report["next_steps"] if "GEMMA_CHAT_THREADS" in s)
    assert "config file" not in step  # the config file is fine: the environment is not


def test_a_bad_value_does_not_concern_a_server_or_the_prompt_inspector(demo_path, monkeypatch):
    monkeypatch.setenv("GEMMA_CHAT_THREADS", "many")
    remote = build_settings(base_url="http://127.0.0.1:9/v1")  # the server's threads
    assert remote.backend == "openai" and remote.threads is None
    with pytest.raises(UsageError, match="GEMMA_CHAT_THREADS"):
        build_settings()  # a local model: refused
    # `prompt` loads only the vocabulary: it renders whatever the variable says.
    proc = run_cli("prompt", "hi", env={"GEMMA_CHAT_THREADS": "many"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"<start_of_turn>user" in proc.stdout


def test_a_bad_value_does_not_refuse_listing_or_inspecting_models(demo_path) -> None:
    # `models` reads GGUF metadata and plans memory: no model runs, no thread is used.
    env = {"GEMMA_CHAT_THREADS": "many"}
    listed = run_cli("models", "--json", env=env)
    assert listed.returncode == 0, listed.stderr.decode()
    info = run_cli("models", "info", str(demo_path), "--json", env=env)
    assert info.returncode == 0, info.stderr.decode()
    assert json.loads(info.stdout)["n_ctx"] > 0


def test_doctor_reports_the_variable_under_a_server_config(demo_path, tmp_path: Path) -> None:
    # doctor describes the local side (llama.cpp, a local model, its threads) whatever the
    # config's backend: `--backend local` would run with the variable's count, not the
    # config file's.
    config = tmp_path / "config.toml"
    config.write_text('backend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nthreads = 4\n')
    env = {"GEMMA_CHAT_THREADS": "1", "GEMMA_CHAT_CONFIG": str(config)}
    report = json.loads(run_cli("doctor", "--json", env=env).stdout)
    assert report["threads"]["used"] == 1
    assert report["threads"]["source"] == "GEMMA_CHAT_THREADS"


def test_doctor_reports_the_variable_when_the_config_is_left_out(demo_path, tmp_path) -> None:
    # A config doctor cannot use is reported and left out; the variable still applies.
    config = tmp_path / "config.toml"
    config.write_text("ctx = 'lots'\n")
    env = {"GEMMA_CHAT_THREADS": "1", "GEMMA_CHAT_CONFIG": str(config)}
    report = json.loads(run_cli("doctor", "--json", env=env).stdout)
    assert report["config_error"]
    assert report["threads"]["used"] == 1
    assert report["threads"]["source"] == "GEMMA_CHAT_THREADS"
