"""Settings you can see: ``/temp`` and ``/set KEY`` show the current value, ``/set``
alone lists them all, and every validation message is in plain words, in the app (slash
commands, the F2 form) and on the command line (options, the config file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from pydantic import ValidationError
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.commands import SAMPLING_KEYS, current_settings
from gemma_chat.config.config_file import describe_validation_error
from gemma_chat.config.plain_errors import plain_message
from gemma_chat.config.settings import RepeatGuard, Sampling, Settings
from gemma_chat.errors import UsageError
from gemma_chat.tui.app import GemmaChatApp

RAW_PYDANTIC = ("Input should", "String should", "unable to parse", "Value error")


def assert_plain(text: str) -> None:
    assert not any(raw in text for raw in RAW_PYDANTIC), text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"temperature": "hot"}, "temperature: must be a number, not 'hot'"),
        ({"temperature": -1}, "temperature: must be 0.0 or more, not -1"),
        ({"top_p": 3}, "top_p: must be 1.0 or less, not 3"),
        ({"top_k": "1.5"}, "top_k: must be a whole number, not '1.5'"),
        ({"seed": "x"}, "seed: must be a whole number, not 'x'"),
        ({"tempreature": 1}, "tempreature: is not a known key"),
    ],
)
def test_sampling_errors_in_plain_words(values, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Sampling.model_validate(values)
    assert describe_validation_error(caught.value) == expected


def test_a_rare_error_keeps_a_readable_message() -> None:
    assert plain_message({"type": "value_error", "msg": "Value error, bad thing"}) == "bad thing"
    assert plain_message({"type": "string_too_short", "ctx": {"min_length": 1}}) == (
        "must not be empty"
    )
    assert plain_message({"type": "literal_error", "ctx": {"expected": "'a' or 'b'"}}) == (
        "must be 'a' or 'b'"
    )


def test_the_command_line_and_the_config_say_it_plainly(tmp_path: Path, monkeypatch) -> None:
    from gemma_chat.cli.run_settings import build_settings

    config = tmp_path / "config.toml"
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(config))
    config.write_text('[sampling]\ntemperature = "warm"\n')
    with pytest.raises(UsageError) as caught:
        build_settings()
    assert "temperature (--temperature): must be a number, not 'warm'" in str(caught.value)
    assert_plain(str(caught.value))


@pytest.mark.slow
def test_a_bad_option_is_one_plain_line() -> None:
    proc = run_cli("ask", "--top-p", "3", "--no-save", "hi", timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "top_p (--top-p): must be 1.0 or less, not 3" in err
    assert_plain(err)


def test_current_settings_list_every_key() -> None:
    rows = dict(current_settings(Sampling(temperature=0.3), RepeatGuard(enabled=False)))
    assert list(rows) == [*SAMPLING_KEYS, "repeat_guard"]
    assert rows["temperature"] == "0.3" and rows["seed"] == "random"
    assert rows["repeat_guard"] == "off"


async def test_temp_and_set_show_the_current_values(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/temp")
        await settle(pilot)
        assert notifications(app)[-1].startswith("temperature = 1.0")
        await send(pilot, "/temp 0.3")
        await send(pilot, "/temp")
        await settle(pilot)
        assert notifications(app)[-1].startswith("temperature = 0.3")
        assert app.engine.sampling.temperature == 0.3  # showing it changed nothing
        await send(pilot, "/set top_k")
        await settle(pilot)
        assert notifications(app)[-1].startswith("top_k = 64")
        await send(pilot, "/set seed")
        await settle(pilot)
        assert notifications(app)[-1].startswith("seed = random")
        await send(pilot, "/set")
        await settle(pilot)
        listing = notifications(app)[-1]
        for key in [*SAMPLING_KEYS, "repeat_guard"]:
            assert f"\n{key} = " in f"\n{listing}", key
        assert "temperature = 0.3" in listing and "repeat_guard = on" in listing
        await send(pilot, "/set nope")
        await settle(pilot)
        assert "unknown parameter 'nope'" in notifications(app)[-1]


async def test_bad_values_in_the_app_are_plain_words(vocab) -> None:
    from textual.widgets import Button, Input

    from gemma_chat.tui.screens.settings import SettingsScreen

    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/set temperature abc")
        await settle(pilot)
        assert "temperature: must be a number, not 'abc'" in notifications(app)[-1]
        assert_plain(notifications(app)[-1])
        await send(pilot, "/temp 7")
        await settle(pilot)
        assert "temperature: must be 5.0 or less, not '7'" in notifications(app)[-1]
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        screen.query_one("#settings-top_k", Input).value = "many"
        screen.query_one("#settings-save", Button).press()
        error = screen.query_one("#settings-error")
        await wait_until(pilot, lambda: "top_k" in str(error.render()))
        assert str(error.render()) == "top_k: must be a whole number, not 'many'"
