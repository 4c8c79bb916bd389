"""The house's size limits (issue #11): small modules with one job.

No module of ``gemma_chat/`` is over 400 lines, and no function in the core of a reply
(``chat/``, ``generation/``) is over 60. A module that grows past them is split by
concern, not squeezed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gemma_chat"
MODULE_LINES = 400
FUNCTION_LINES = 60


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert long == {}


def test_no_function_in_chat_or_generation_is_over_60_lines() -> None:
    long = {}
    for package in ("chat", "generation"):
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > FUNCTION_LINES:
                        long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}
