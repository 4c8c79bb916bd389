"""What a message's ``meta`` says, as Markdown lines for transcripts (``history show``, the
Markdown export): the files attached to a question, how a long input was answered part
by part (and, verbose, every step's note), and where turns were compacted.

The meta is read defensively: it may come from an import or a hand edit, so anything of
an unexpected shape is skipped rather than trusted. The caller sanitizes the result.
"""

from __future__ import annotations

from typing import Any

from gemma_chat.sanitize import one_line
from gemma_chat.units import format_bytes


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def attachments_of(meta: Any) -> list[dict[str, Any]]:
    """The ``attachments`` entries of a message's meta (each with a ``name``)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("attachments"), list):
        return []
    return [
        a for a in meta["attachments"] if isinstance(a, dict) and isinstance(a.get("name"), str)
    ]


def attachment_line(meta: Any) -> str | None:
    """``*Attached: notes.md (1.2 KiB, 340 tokens), b.txt (12 B)*``, or None."""
    shown = []
    for item in attachments_of(meta):
        facts = []
        if (size := _int(item.get("size"))) is not None:
            facts.append(format_bytes(size))
        if (tokens := _int(item.get("tokens"))) is not None:
            facts.append(f"{tokens:,} tokens")
        about = f" ({', '.join(facts)})" if facts else ""
        shown.append(f"`{one_line(item['name'], 120)}`{about}")
    return f"*Attached: {', '.join(shown)}*" if shown else None


def map_reduce_lines(meta: Any, verbose: bool) -> list[str]:
    """How a reply was answered part by part; ``verbose`` adds every step's note."""
    if not isinstance(meta, dict) or not isinstance(meta.get("map_reduce"), dict):
        return []
    run = meta["map_reduce"]
    chunks, calls = _int(run.get("chunks")), _int(run.get("calls"))
    tokens = _int(run.get("input_tokens"))
    head = f"*Answered part by part: {chunks} parts of {tokens:,} tokens, {calls} model calls"
    head += "" if verbose else " (history show --verbose shows the notes)"
    lines = [head + "*", ""]
    steps = run.get("steps") if isinstance(run.get("steps"), list) else []
    if not verbose:
        return lines
    for step in steps:
        if not isinstance(step, dict):
            continue
        title = one_line(str(step.get("title", "")), 160)
        counts = f"{step.get('prompt_tokens')} prompt + {step.get('completion_tokens')} tokens"
        stop = one_line(str(step.get("stop_reason", "")), 40)
        lines += [f"**{step.get('kind', 'step')}: {title}** ({counts}, stop: {stop})", ""]
        if step.get("error"):
            lines += [f"*failed: {one_line(str(step['error']), 300)}*", ""]
        text = str(step.get("text") or "").rstrip()
        lines += [*(f"> {line}" if line else ">" for line in text.splitlines()), ""]
    return lines


def compaction_line(meta: Any) -> str | None:
    """The marker where older turns were compacted into a summary, or None."""
    if not isinstance(meta, dict) or not isinstance(meta.get("compacted"), dict):
        return None
    turns = _int(meta["compacted"].get("turns"))
    return f"*— {turns} earlier turns were compacted into a summary here —*"
