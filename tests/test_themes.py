"""Theme files (shipped and user), their packaging, and the remembered UI state.

Plain pytest: the loader is pure, and Textual's own stylesheet parser stands in for the app
when checking that a theme's values are accepted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from textual.css.stylesheet import Stylesheet
from textual.theme import Theme

from gemma_chat.config import ui_prefs as state
from gemma_chat.tui.themes import (
    BUILTIN_THEME_PACKAGE,
    DEFAULT_THEME,
    ThemeFailure,
    ThemeFile,
    failure_message,
    load_themes,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
THEMES_DIR = REPO / "themes"
SHIPPED_FILES = sorted(THEMES_DIR.glob("*.toml"))

GOOD = 'name = "mine"\nprimary = "#336699"\ndark = false\n'


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _assert_textual_accepts(theme: Theme) -> None:
    """Parse a stylesheet that uses every colour and variable of ``theme``, as the app will."""
    variables = {**theme.to_color_system().generate(), **theme.variables}
    rules = [f"background: ${name};" for name in ("primary", "secondary", "accent", "panel")]
    for key, value in theme.variables.items():
        if "style" in key.split("-"):
            rules.append(f"text-style: ${key};")
        else:
            rules.append(f"color: ${key};")
            if not value.startswith("auto"):
                rules.append(f"background: ${key};")
    sheet = Stylesheet(variables=variables)
    sheet.add_source("Screen { " + " ".join(rules) + " }", read_from=(theme.name, ""))
    sheet.parse()  # raises StylesheetParseError on a value Textual rejects


# --- the shipped themes ------------------------------------------------------------


def test_shipped_themes_load_with_distinct_names_and_both_kinds() -> None:
    loaded, failed = load_themes(None)
    names = [theme.name for theme in loaded]
    assert failed == []
    assert len(loaded) == len(SHIPPED_FILES) >= 3
    assert len(set(names)) == len(names)
    assert DEFAULT_THEME in names
    assert {"gemma-dark", "gemma-light"} <= set(names)
    assert any(theme.dark for theme in loaded)
    assert any(not theme.dark for theme in loaded)
    default = next(theme for theme in loaded if theme.name == DEFAULT_THEME)
    assert default.dark


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda path: path.stem)
def test_every_shipped_theme_is_accepted_by_textual(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["name"] == path.stem, "a shipped theme's file is named after the theme"
    theme = ThemeFile.model_validate(data).to_theme()
    assert isinstance(theme, Theme)
    assert theme.secondary and theme.background and theme.foreground, "fully designed"
    _assert_textual_accepts(theme)


def test_shipped_themes_are_package_resources() -> None:
    names = {entry.name for entry in resources.files(BUILTIN_THEME_PACKAGE).iterdir()}
    assert {path.name for path in SHIPPED_FILES} <= names


def test_pyproject_lists_every_package() -> None:
    """The package list is explicit (for the themes mapping), so nothing may be missing."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "gemma_chat").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {BUILTIN_THEME_PACKAGE}
    assert setuptools["package-dir"] == {BUILTIN_THEME_PACKAGE: "themes"}
    assert "*.toml" in config["tool"]["setuptools"]["package-data"][BUILTIN_THEME_PACKAGE]


def test_readme_example_is_a_valid_theme(tmp_path: Path) -> None:
    readme = (THEMES_DIR / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    _write(tmp_path, "forest.toml", example.group(1))
    loaded, failed = load_themes(tmp_path)
    assert failed == []
    forest = next(theme for theme in loaded if theme.name == "forest")
    _assert_textual_accepts(forest)


# --- user themes ---------------------------------------------------------------------


def test_user_dir_splits_good_from_bad(tmp_path: Path) -> None:
    _write(tmp_path, "good.toml", GOOD)
    broken = _write(tmp_path, "broken.toml", 'name = "broken"\nprimary = \n')
    unknown = _write(tmp_path, "unknown.toml", 'name = "u"\nprimary = "#fff"\ncolour = "red"\n')
    bad_color = _write(tmp_path, "color.toml", 'name = "c"\nprimary = "blurple"\n')
    _write(tmp_path, "notes.txt", "not a theme = [")
    (tmp_path / "folder.toml").mkdir()

    loaded, failed = load_themes(tmp_path)

    shipped = [path.stem for path in SHIPPED_FILES]
    assert sorted(theme.name for theme in loaded) == sorted([*shipped, "mine"])
    mine = next(theme for theme in loaded if theme.name == "mine")
    assert (mine.primary, mine.dark) == ("#336699", False)
    assert [failure.path for failure in failed] == [broken, bad_color, unknown]
    reasons = {failure.path.name: failure.reason for failure in failed}
    assert reasons["broken.toml"].startswith("invalid TOML")
    assert "unknown key 'colour'" in reasons["unknown.toml"]
    assert "primary = 'blurple' is not a colour" in reasons["color.toml"]
    assert all("\n" not in failure.reason for failure in failed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('primary = "#fff"\n', "missing required key 'name'"),
        ('name = "x"\n', "missing required key 'primary'"),
        ('name = "two words"\nprimary = "#fff"\n', "name = 'two words'"),
        ('name = "x"\nprimary = "#fff"\ndark = "yes"\n', "dark"),
        ('name = "x"\nprimary = "#fff"\nsurface = "#12345"\n', "surface = '#12345'"),
        (
            'name = "x"\nprimary = "#fff"\n[variables]\nborder = "$primary"\n',
            "border = '$primary' is not a colour",
        ),
        (
            'name = "x"\nprimary = "#fff"\n[variables]\nlink-style = "shiny"\n',
            "link-style = 'shiny' is not a text style",
        ),
        (
            'name = "x"\nprimary = "#fff"\n[variables]\nfooter-key-foreground = "red 150%"\n',
            "footer-key-foreground = 'red 150%'",
        ),
        ('name = "x"\nprimary = "#fff"\n[variables]\nborder = 3\n', "variables.border"),
    ],
)
def test_validation_reasons_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    _write(tmp_path, "theme.toml", text)
    _, failed = load_themes(tmp_path)
    assert len(failed) == 1
    assert expected in failed[0].reason


def test_variables_accepted_by_the_loader_are_accepted_by_textual(tmp_path: Path) -> None:
    variables = {
        "border": "#6E9BFF",
        "border-blurred": "transparent",
        "footer-key-foreground": "ansi_bright_cyan",
        "input-selection-background": "#6E9BFF 35%",
        "text": "auto 87%",
        "link-background": "initial",
        "scrollbar": "hsl(220, 60%, 50%)",
        "block-cursor-text-style": "b not underline",
    }
    lines = "\n".join(f'{key} = "{value}"' for key, value in variables.items())
    _write(tmp_path, "vars.toml", f'name = "vars"\nprimary = "#fff"\n[variables]\n{lines}\n')
    loaded, failed = load_themes(tmp_path)
    assert failed == []
    theme = next(theme for theme in loaded if theme.name == "vars")
    assert theme.variables == variables
    _assert_textual_accepts(theme)


def test_user_theme_overrides_a_shipped_one(tmp_path: Path) -> None:
    _write(tmp_path, "mine.toml", f'name = "{DEFAULT_THEME}"\nprimary = "#FF0000"\n')
    loaded, failed = load_themes(tmp_path)
    assert failed == []
    matching = [theme for theme in loaded if theme.name == DEFAULT_THEME]
    assert len(matching) == 1
    assert matching[0].primary == "#FF0000"
    assert len(loaded) == len(SHIPPED_FILES)


def test_two_user_files_with_one_name_fail_the_second(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", GOOD)
    second = _write(tmp_path, "b.toml", GOOD.replace("#336699", "#000000"))
    loaded, failed = load_themes(tmp_path)
    assert next(theme for theme in loaded if theme.name == "mine").primary == "#336699"
    assert failed == [ThemeFailure(second, "theme 'mine' is already in a.toml")]


def test_undecodable_and_unreadable_files_fail_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "latin1.toml", 'name = "caf\xe9"\n'.encode("latin-1"))
    locked = _write(tmp_path, "locked.toml", GOOD)
    from gemma_chat.tui import themes

    real_read = themes.read_regular_file

    def read(path: Path, limit: int) -> bytes:
        # Tests run as root, where file permissions do not stop reads.
        if path == locked:
            raise PermissionError(13, "Permission denied")
        return real_read(path, limit)

    monkeypatch.setattr(themes, "read_regular_file", read)
    _, failed = load_themes(tmp_path)
    reasons = {failure.path.name: failure.reason for failure in failed}
    assert reasons == {
        "latin1.toml": "not a UTF-8 text file",
        "locked.toml": "cannot read the file: Permission denied",
    }


def test_missing_user_dir_is_not_an_error(tmp_path: Path) -> None:
    loaded, failed = load_themes(tmp_path / "nowhere")
    assert failed == []
    assert len(loaded) == len(SHIPPED_FILES)


def test_failure_message_names_every_file() -> None:
    failures = [
        ThemeFailure(Path("/x/themes/one.toml"), "invalid TOML: oops"),
        ThemeFailure(Path("/x/themes/two.toml"), "unknown key 'colour'"),
    ]
    message = failure_message(failures)
    assert message.splitlines() == [
        "2 theme files were skipped:",
        "• one.toml: invalid TOML: oops",
        "• two.toml: unknown key 'colour'",
    ]
    assert failure_message(failures[:1]).startswith("1 theme file was skipped:")
    assert failure_message([]) == ""


# --- remembered state ----------------------------------------------------------------


def test_state_round_trips_and_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path / "data"))
    assert state.load_state() == {}
    assert state.save_state(theme="gemma-light") is True
    assert state.save_state(count=2) is True
    assert state.load_state() == {"theme": "gemma-light", "count": 2}
    assert state.state_file() == tmp_path / "data" / "state.json"
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["state.json"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_corrupt_state_reads_as_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path))
    (tmp_path / "state.json").write_bytes(content)
    assert state.load_state() == {}
    assert state.save_state(theme="gemma-dusk") is True
    assert json.loads((tmp_path / "state.json").read_text()) == {"theme": "gemma-dusk"}


def test_unwritable_state_dir_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where the folder should be: mkdir fails even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(blocker / "data"))
    assert state.save_state(theme="gemma-dark") is False
    assert state.load_state() == {}


def test_failed_replace_keeps_old_state_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path))
    assert state.save_state(theme="gemma-dark")

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, "replace", refuse)
    assert state.save_state(theme="gemma-light") is False
    assert state.load_state() == {"theme": "gemma-dark"}
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_state_module_does_not_import_textual() -> None:
    code = (
        "import sys, gemma_chat.config.ui_prefs; "
        "sys.exit(any(name.split('.')[0] == 'textual' for name in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
