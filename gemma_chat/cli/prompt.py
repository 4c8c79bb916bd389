"""``gemma-chat prompt``: show the exact prompt gemma-chat would send.

Control tokens are spelled out as text on purpose (``<start_of_turn>``); the text around
them (piped files, the GGUF's token texts) is sanitized like any other untrusted text,
so an escape sequence in it is shown, never obeyed. ``--json`` keeps it exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gemma_chat.chat.conversation import Conversation
from gemma_chat.chat.template import GemmaTemplate, RenderedToken
from gemma_chat.cli.inputs import read_input
from gemma_chat.cli.output import notify
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.models.loader import inspect_for
from gemma_chat.sanitize import json_safe, visible


def run_prompt(
    settings: Settings,
    question: str | None,
    as_json: bool,
    prompt: SavedPrompt | None = None,
    files: Sequence[str] = (),
) -> int:
    """Render the user message (attached ``files``, piped text, the question; and the
    system prompt) with the model's own vocabulary; a saved ``prompt``'s template fills
    the message as ``ask -p`` does."""
    message = read_input(question, files).message
    if prompt is not None:
        message = prompt.fill(message)
    info = inspect_for(settings, notify)
    from gemma_chat.backend.local import load_vocab

    template = GemmaTemplate(load_vocab(Path(info.path), debug=settings.debug))
    conversation = Conversation(system=settings.system)
    conversation.add_user(message)
    text, tokens = template.inspect(template.render_conversation(conversation))
    if as_json:
        payload = {
            "text": text,
            "tokens": [{"id": t.id, "piece": t.piece, "control": t.control} for t in tokens],
        }
        print(json_safe(json.dumps(payload, ensure_ascii=False)))
    elif sys.stdout.isatty():
        _print_marked(tokens)
        notify(f"{len(tokens)} tokens ({info.display_name}); control tokens in bold magenta")
    else:
        sys.stdout.write(visible(text))
        sys.stdout.flush()
        notify(f"{len(tokens)} tokens ({info.display_name})")
    return 0


def _print_marked(tokens: list[RenderedToken]) -> None:
    """On a terminal, show control tokens in colour, so that text which merely spells a
    marker (``<end_of_turn>`` typed by a user) can be told from the real thing."""
    from rich.console import Console
    from rich.text import Text

    out = Text()
    for token in tokens:
        out.append(visible(token.piece), style="bold magenta" if token.control else None)
    Console(highlight=False).print(out, end="", soft_wrap=True)
