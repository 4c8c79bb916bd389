"""Every text colour of the shipped themes is readable: at least 4.5:1 (WCAG AA) against
its background, and table rules at least 3:1 (WCAG's bar for non-text lines).

Two ways: from the theme files alone (each text colour the stylesheet uses, over each
background it is used on, resolved as Textual resolves it), and from the running app (the
colours Textual actually renders for the status bar, the input's placeholder, messages,
notices, the sidebar, the welcome panel and the footer).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.color import Color
from tui_support import scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.themes import load_themes

SHIPPED = sorted(p.stem for p in (Path(__file__).parent.parent / "themes").glob("*.toml"))
TEXT = 4.5
LINES = 3.0

TEXT_COLOURS = ("$text", "$text-muted", "$primary", "$secondary", "$accent", "$success",
                "$warning", "$error")  # fmt: skip
"""Colours gemma.tcss (and Textual's Markdown, code and footer) set text in."""
BACKGROUNDS = ("background", "surface", "panel")


def luminance(color: Color) -> float:
    """WCAG relative luminance."""

    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)


def contrast(a: Color, b: Color) -> float:
    """The WCAG contrast ratio of two opaque colours."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def resolve(expr: str, variables: dict[str, str], background: Color) -> Color:
    """A CSS colour value (``$var``, ``$var 40%``, ``auto 87%``, ``#hex``) as the opaque
    colour it paints over ``background``, the way Textual blends it."""
    parts = expr.split()
    alpha = float(parts[1].rstrip("%")) / 100 if len(parts) == 2 else 1.0
    if parts[0] == "auto":
        return background + background.get_contrast_text(alpha)
    if parts[0].startswith("$"):
        inner = resolve(variables[parts[0][1:]], variables, background)
        return background + inner.with_alpha(alpha)
    color = Color.parse(parts[0])
    return background + color.with_alpha(color.a * alpha)


def theme_pairs() -> list[tuple[str, str, str, float]]:
    """``(theme, colour, background, minimum)`` for every shipped theme."""
    pairs = []
    for theme in SHIPPED:
        for background in BACKGROUNDS:
            pairs += [(theme, fg, background, TEXT) for fg in TEXT_COLOURS]
        pairs += [
            (theme, "$text", "primary-muted", TEXT),  # your messages
            (theme, "$footer-key-foreground", "footer-background", TEXT),
            (theme, "$footer-description-foreground", "footer-background", TEXT),
            *[(theme, f"$markdown-h{n}-color", "surface", TEXT) for n in (1, 2, 3)],
            (theme, "$foreground 55%", "surface", LINES),  # table rules (gemma.tcss)
        ]
    return pairs


@pytest.fixture(scope="module")
def variables() -> dict[str, dict[str, str]]:
    loaded, failed = load_themes(Path("/nonexistent-user-themes"))
    assert not failed
    found = {}
    for theme in loaded:
        values = theme.to_color_system().generate()
        values.update(theme.variables)
        found[theme.name] = values
    return found


@pytest.mark.parametrize(("theme", "colour", "background", "least"), theme_pairs())
def test_theme_file_colours(variables, theme, colour, background, least) -> None:
    values = variables[theme]
    if colour[1:].split()[0] not in values and colour.startswith("$"):
        pytest.skip(f"{theme} leaves {colour} to Textual's default")
    back = Color.parse(values[background])
    ratio = contrast(resolve(colour, values, back), back)
    assert ratio >= least, f"{theme}: {colour} on ${background} is {ratio:.2f}:1"


def test_the_old_faint_placeholder_would_fail(variables) -> None:
    """Textual's default placeholder ($text 40%) is the colour the issue measured."""
    values = variables["gemma-light"]
    back = Color.parse(values["surface"])
    assert contrast(resolve("$text 40%", values, back), back) < TEXT


def rendered(style) -> float:
    return contrast(Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor))


@pytest.mark.parametrize("theme", SHIPPED)
async def test_rendered_text_is_readable(vocab, theme: str) -> None:
    reply = "## Table\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nDone."
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, [reply]), theme=theme)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        found: dict[str, float] = {
            "placeholder": rendered(app.prompt.get_component_rich_style("text-area--placeholder")),
            "welcome": rendered(app.query_one("WelcomePanel").rich_style),
        }
        await send(pilot, "hi")
        await wait_until(pilot, lambda: any(t.role is Role.MODEL for t in app.conversation.turns))
        await app.chat.add_notice("a notice")
        await app.chat.add_notice("an error", error=True)
        await pilot.press("ctrl+b")
        await settle(pilot)
        for widget in app.query("StatusBar Static, .user-message, .notice, .sidebar-hint"):
            found[f"{widget.id or widget.classes}"] = rendered(widget.rich_style)
        for key in app.screen.query("FooterKey"):
            for part in ("footer-key--key", "footer-key--description"):
                found[part] = rendered(key.get_component_rich_style(part))
        table = app.query_one(".model-reply MarkdownTable")
        _, line = table.styles.keyline
        back = Color.from_rich_color(table.rich_style.bgcolor)
        found["table rules"] = contrast(back + line, back) / LINES * TEXT  # 3:1 counts
        low = {name: round(ratio, 2) for name, ratio in found.items() if ratio < TEXT}
        assert low == {}, f"{theme}: {low}"
