"""The README's config examples are valid configuration."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from gemma_chat.config.config_file import tomllib  # tomli on Python 3.10
from gemma_chat.config.settings import Settings

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_has_config_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{n}" for n in range(len(BLOCKS))])
def test_every_config_example_validates(block: str) -> None:
    Settings.model_validate(tomllib.loads(block))


def test_the_readme_documents_every_pull_alias() -> None:
    from gemma_chat.pull.catalog import ALIASES, DEFAULT_QUANT

    text = README.read_text(encoding="utf-8")
    for name, alias in ALIASES.items():
        row = (
            f"| `{name}` | [{alias.repo}](https://huggingface.co/{alias.repo}) | "
            f"`{alias.pattern.format(quant=DEFAULT_QUANT)}` |"
        )
        assert row in text, row


# --- The README a newcomer reads: a short quick start, working commands, live links ---

TEXT = README.read_text(encoding="utf-8")
QUICK_START_LINES = 40
INSTALL_AND_RUN = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[demo]' && gemma-chat"
)
INSTALL_AND_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"
)


def _outside_code(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _quick_start() -> str:
    start = TEXT.index("## Quick start")
    return TEXT[start : TEXT.index("\n## ", start + 1)]


def test_the_quick_start_comes_first_and_is_short() -> None:
    headings = [line for line in _outside_code(TEXT) if line.startswith("## ")]
    assert headings[0] == "## Quick start"
    assert headings[-1] == "## Development"
    assert len(_quick_start().strip().splitlines()) <= QUICK_START_LINES


def test_the_quick_start_opens_with_the_two_commands_verbatim() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", _quick_start(), re.DOTALL)
    assert [block.strip() for block in blocks[:2]] == [INSTALL_AND_RUN, INSTALL_AND_TEST]
    assert "pull gemma2:2b" in _quick_start() and " ask " in _quick_start()


def test_headings_never_skip_a_level() -> None:
    levels = [
        len(line) - len(line.lstrip("#")) for line in _outside_code(TEXT) if line.startswith("#")
    ]
    assert levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, (before, after)


def test_every_docs_link_exists_and_every_design_note_is_linked() -> None:
    root = README.parent
    linked = set(re.findall(r"\]\((docs/[^)#]+)", TEXT))
    assert linked, "the README links no design note"
    for target in linked:
        assert (root / target).is_file(), target
    notes = {f"docs/{path.name}" for path in (root / "docs").glob("*.md")}
    assert notes <= linked, notes - linked


def _readme_commands() -> list[list[str]]:
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\|(?!\|)|&&", line.split("  #")[0]):
                words = shlex.split(part, comments=True)
                if words and words[0] == "gemma-chat":
                    commands.append(words[1:])
    return commands


@pytest.mark.parametrize("args", _readme_commands(), ids=lambda args: " ".join(args)[:40])
def test_every_gemma_chat_command_in_the_readme_parses(args: list[str]) -> None:
    """Each `gemma-chat ...` line in the README names real commands and options (parsed
    by the CLI itself, not run)."""
    import typer

    from gemma_chat.cli import app

    command = typer.main.get_command(app)  # Typer's own (vendored) Click command
    try:
        context = command.make_context("gemma-chat", list(args), resilient_parsing=False)
    except typer.Exit as done:  # an eager option (--version) printed and ended: it parsed
        assert done.exit_code == 0
        return
    while hasattr(command, "resolve_command"):  # a group: parse its subcommand too
        pending = [*context._protected_args, *context.args]
        if not pending:
            break
        name, sub, rest = command.resolve_command(context, pending)
        assert sub is not None, name
        command, context = sub, sub.make_context(name, rest, parent=context)


def test_the_readme_commands_are_found() -> None:
    assert len(_readme_commands()) >= 20
