"""The README's config examples are valid configuration."""

from __future__ import annotations

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
