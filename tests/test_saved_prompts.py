"""Saved prompts (issue #15): the library, precedence, folding and bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from gemma_chat.cli.run_settings import build_settings
from gemma_chat.config.prompt_library import find_prompt, load_prompts
from gemma_chat.config.settings import SavedPrompt
from gemma_chat.errors import UsageError
from gemma_chat.history.store import HistoryStore

SHIPPED = {"summarize", "translate", "explain-code", "commit-message"}


def _config(tmp_path: Path, text: str = "") -> Path:
    """A config file (and its prompts folder) that the tests' environment points at."""
    config = Path(os.environ["GEMMA_CHAT_CONFIG"])
    config.write_text(text)
    (config.parent / "prompts").mkdir(exist_ok=True)
    return config.parent / "prompts"


def test_shipped_prompts_load_and_have_input_templates() -> None:
    found, failures = load_prompts(folder=Path("/nonexistent"))
    assert failures == []
    assert set(found) >= SHIPPED
    for name in SHIPPED:
        entry = found[name]
        assert entry.source == "shipped" and entry.prompt.system
        assert "{input}" in (entry.prompt.template or "")


def test_precedence_command_line_over_prompt_over_config(tmp_path: Path) -> None:
    folder = _config(
        tmp_path,
        'system = "config system"\n[sampling]\ntemperature = 0.9\ntop_k = 10\nmax_tokens = 50\n',
    )
    (folder / "terse.toml").write_text(
        'system = "prompt system"\n[sampling]\ntemperature = 0.2\nmax_tokens = 30\n'
    )
    found, _ = load_prompts()
    prompt = found["terse"].prompt
    plain = build_settings()
    assert (plain.system, plain.sampling.temperature) == ("config system", 0.9)
    with_prompt = build_settings(prompt=prompt)
    assert with_prompt.system == "prompt system"
    assert with_prompt.sampling.temperature == 0.2 and with_prompt.sampling.max_tokens == 30
    assert with_prompt.sampling.top_k == 10  # what the prompt leaves alone stays the config's
    cli = build_settings(prompt=prompt, system="cli system", temperature=0.7)
    assert cli.system == "cli system" and cli.sampling.temperature == 0.7
    assert cli.sampling.max_tokens == 30


def test_config_tables_win_over_files_and_files_over_shipped(tmp_path: Path) -> None:
    folder = _config(tmp_path, '[prompts.summarize]\nsystem = "from the config"\n')
    (folder / "summarize.toml").write_text('system = "from the file"\n')
    (folder / "translate.toml").write_text('system = "my translator"\n')
    found, failures = load_prompts(
        SavedPrompt and {"summarize": SavedPrompt(system="from the config")}
    )
    assert failures == []
    assert found["summarize"].prompt.system == "from the config"
    assert found["translate"].prompt.system == "my translator"
    assert found["translate"].source.endswith("translate.toml")


def test_a_malformed_file_is_reported_once_by_name_and_the_others_load(tmp_path: Path) -> None:
    folder = _config(tmp_path, '[prompts.mine]\ndescription = "from the config"\n')
    (folder / "good.toml").write_text('system = "fine"\ntemplate = "Q: {input}"\n')
    (folder / "broken.toml").write_text("system = [\n")
    (folder / "typo.toml").write_text('sytem = "oops"\n')
    (folder / "hot.toml").write_text("[sampling]\ntemperature = 99\n")
    (folder / "notes.txt").write_text("not a prompt")
    found, failures = load_prompts()
    assert {"good", *SHIPPED} <= set(found)
    assert sorted(f.path.name for f in failures) == ["broken.toml", "hot.toml", "typo.toml"]
    with pytest.raises(UsageError, match=r"prompt 'typo' \(typo.toml\) cannot be used"):
        find_prompt("typo", found, failures)
    with pytest.raises(UsageError, match="no prompt named 'nope'"):
        find_prompt("nope", found, failures)
    # The CLI lists the good ones on stdout and each bad file once on stderr.
    proc = run_cli("prompts")
    assert proc.returncode == 0
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "good" in out and "summarize" in out and "broken" not in out
    assert any(
        line.split() == ["mine", "config", "from", "the", "config"] for line in out.splitlines()
    )
    assert err.count("broken.toml") == 1 and err.count("typo.toml") == 1
    assert err.count("hot.toml") == 1 and len(err.splitlines()) == 3
    # Using the bad one is a one-line usage error naming it.
    proc = run_cli("ask", "-p", "broken", "hi")
    assert proc.returncode == 2
    assert "prompt 'broken' (broken.toml) cannot be used: invalid TOML" in proc.stderr.decode()


def test_template_fill() -> None:
    assert SavedPrompt(template="Q: {input}!").fill("x") == "Q: x!"
    assert SavedPrompt(template="Fix this:").fill("x") == "Fix this:\n\nx"
    assert SavedPrompt().fill("x") == "x"
    # JSON braces in a template are text, not format fields.
    assert SavedPrompt(template='{"a": 1} {input}').fill("x") == '{"a": 1} x'


def test_prompt_shows_the_exact_folded_result(tiny_models) -> None:
    path = str(tiny_models["runaway"].path)
    proc = run_cli("prompt", "-m", path, "-p", "commit-message", "--json", stdin=b"+new line\n")
    assert proc.returncode == 0, proc.stderr
    text = json.loads(proc.stdout)["text"]
    found, _ = load_prompts()
    system = found["commit-message"].prompt.system
    assert text == (
        f"<bos><start_of_turn>user\n{system}\n\nWrite the commit message for this diff:\n\n"
        "+new line<end_of_turn>\n<start_of_turn>model\n"
    )


def test_ask_with_a_prompt_and_piped_input(tiny_models, tmp_path: Path) -> None:
    folder = _config(tmp_path)
    (folder / "shout.toml").write_text(
        'system = "Answer loudly."\ntemplate = "Say it: {input}"\n[sampling]\nmax_tokens = 3\n'
    )
    path = str(tiny_models["runaway"].path)
    proc = run_cli("ask", "-m", path, "-p", "shout", "--json", stdin=b"git diff text")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["completion_tokens"] == 3  # the prompt's max_tokens
    with HistoryStore() as store:
        record = store.latest()
        assert record is not None and record.system == "Answer loudly."
        assert store.messages(record.id)[0].text == "Say it: git diff text"
    # The command line wins over the prompt.
    proc = run_cli("ask", "-m", path, "-p", "shout", "-n", "2", "--json", stdin=b"x")
    assert json.loads(proc.stdout)["completion_tokens"] == 2


def test_a_prompt_schema_becomes_the_constraint(tmp_path: Path) -> None:
    folder = _config(tmp_path, '[prompts.person]\nschema = "name, age int"\n')
    (folder / "table.toml").write_text('[schema]\ntype = "object"\nrequired = ["x"]\n')
    (folder / "filed.toml").write_text('schema = "@person.json"\n')
    (folder / "person.json").write_text('{"type": "object"}')
    (folder / "wrong.toml").write_text('schema = "age years"\n')
    found, _ = load_prompts({"person": SavedPrompt.model_validate({"schema": "name, age int"})})
    assert found["person"].constraint().schema["required"] == ["name", "age"]
    assert found["table"].constraint().schema["required"] == ["x"]
    assert found["filed"].constraint().schema == {"type": "object"}
    with pytest.raises(UsageError, match="prompt 'wrong': --schema: unknown type 'years'"):
        found["wrong"].constraint()
    proc = run_cli("ask", "-m", "/nonexistent.gguf", "-p", "wrong", "hi")
    assert proc.returncode == 2 and "unknown type 'years'" in proc.stderr.decode()


def test_a_prompt_wins_over_a_continued_conversation_s_settings(tiny_models, tmp_path) -> None:
    folder = _config(tmp_path)
    (folder / "shout.toml").write_text(
        'system = "Answer loudly."\ntemplate = "Say it: {input}"\n[sampling]\nmax_tokens = 3\n'
    )
    path = str(tiny_models["runaway"].path)
    first = run_cli("ask", "-m", path, "-n", "6", "--system", "Be calm.", "first")
    assert first.returncode == 0, first.stderr
    # Command line > prompt > the continued conversation's stored settings > config.
    proc = run_cli("ask", "-m", path, "--continue", "-p", "shout", "--json", stdin=b"diff")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["completion_tokens"] == 3  # the prompt's, not the stored 6
    with HistoryStore() as store:
        record = store.latest()
        assert record is not None and record.system == "Answer loudly."
        assert store.messages(record.id)[-2].text == "Say it: diff"
    proc = run_cli("ask", "-m", path, "-c", "-p", "shout", "-n", "2", "--json", stdin=b"x")
    assert json.loads(proc.stdout)["completion_tokens"] == 2
    # Without -p, a continued conversation keeps its own settings, as before.
    proc = run_cli("ask", "-m", path, "-c", "--json", "again")
    assert json.loads(proc.stdout)["completion_tokens"] == 2
