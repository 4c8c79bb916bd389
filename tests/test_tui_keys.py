"""``[keys]`` is validated: entries with an unknown binding id or a key that is not a
key are reported in one notification, and the rest is applied."""

from __future__ import annotations

import pytest
from tui_support import notifications, scripted_loader, send, wait_until

from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.keyspec import check_keymap, key_problem


@pytest.mark.parametrize(
    "key",
    ["ctrl+r", "f5", "escape", "question_mark", "?", "+", "slash", "A", "ctrl+shift+left"],
)
def test_real_keys_pass(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(
    "key", ["!!!", "", "ctrl+", "foo+a", "ctrl+ctrl+a", "F5", "latin_small_letter_a", "\x1b"]
)
def test_junk_keys_are_named(key: str) -> None:
    assert key_problem(key)


def test_every_shipped_binding_is_a_valid_key() -> None:
    app = GemmaChatApp(Settings(), loader=lambda *a: (None, None))
    for binding in app.keys.all_bindings():
        for key in binding.key.split(","):
            assert key_problem(key.strip()) is None, binding


def test_check_keymap_applies_the_good_and_lists_the_bad() -> None:
    usable, problems = check_keymap(
        {"a.one": "f5, ctrl+r", "a.two": "!!!,,,", "nope": "f6", "a.three": "f7,\x1b[2J"},
        {"a.one", "a.two", "a.three"},
    )
    assert usable == {"a.one": "f5,ctrl+r"}
    assert len(problems) == 3
    assert problems[0].startswith("a.two = '!!!,,,': '!!!' is not a key")
    assert "an empty key" in problems[0]
    assert problems[1] == "nope: no such binding (F1 lists them)"
    assert "\x1b" not in problems[2]


async def test_bad_key_entries_are_reported_once_and_the_rest_applies(vocab) -> None:
    settings = Settings(
        keys={
            "gemma.retry": "f5",
            "gemma.history": "!!!,,,",
            "gemma.nonsense": "f6",
            "gemma.help": "ctrl+",
        }
    )
    loader = scripted_loader(vocab, ["one", "two"])
    app = GemmaChatApp(settings, loader=loader)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        reports = [n for n in notifications(app) if "[keys]" in n]
        assert len(reports) == 1, notifications(app)
        report = reports[0]
        assert report.startswith("3 [keys] entries in the config were skipped:")
        for part in ("gemma.history = '!!!,,,'", "gemma.nonsense: no such binding", "gemma.help"):
            assert part in report
        assert "gemma.history" not in app._keymap and "gemma.help" not in app._keymap
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        await pilot.press("f5")  # the good entry applies
        await wait_until(
            pilot,
            lambda: (
                app.conversation.turns[-1].role is Role.MODEL
                and app.conversation.turns[-1].text == "two"
            ),
        )
