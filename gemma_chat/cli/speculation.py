"""How ``ask --json`` and ``--stats`` report speculative decoding."""

from __future__ import annotations

from typing import Any

from gemma_chat.generation.events import ReplyStats


def speculation_dict(stats: ReplyStats) -> dict[str, Any]:
    """The ``--json`` keys: the mode (None: plain decoding), drafted and accepted tokens
    and the acceptance rate (None when nothing was drafted)."""
    drafted = int(getattr(stats, "drafted_tokens", 0))
    accepted = int(getattr(stats, "accepted_tokens", 0))
    return {
        "speculative": getattr(stats, "speculative", None),
        "drafted_tokens": drafted,
        "accepted_tokens": accepted,
        "acceptance": round(accepted / drafted, 4) if drafted else None,
    }


def speculation_text(result: dict[str, Any]) -> str:
    """The ``--stats`` part, e.g. `` (lookup: 120/150 drafted accepted, 80%)``; empty
    for plain decoding."""
    mode = result.get("speculative")
    if not mode:
        return ""
    rate = result.get("acceptance")
    share = f", {rate:.0%}" if rate is not None else ""
    return (
        f" ({mode}: {result['accepted_tokens']}/{result['drafted_tokens']} drafted accepted{share})"
    )
