"""The repetition guard: notice a reply that keeps repeating the same span."""

from __future__ import annotations

from gemma_chat.config.settings import RepeatGuard


class RepetitionDetector:
    """Fires when the newest tokens are one span repeated with nothing new.

    For every period ``p`` up to ``max_period`` it keeps the length of the current run of
    tokens equal to the token ``p`` places earlier. A run of ``r`` such tokens means the
    last ``r + p`` tokens repeat with period ``p``. The guard fires once that tail is at
    least ``min_tokens`` long and holds ``min_repeats`` whole copies of the span. Each
    token costs O(max_period).
    """

    def __init__(self, settings: RepeatGuard) -> None:
        self._settings = settings
        self._tokens: list[int] = []
        self._runs = [0] * (settings.max_period + 1)

    def add(self, token: int) -> bool:
        """Add a generated token; return True when the reply is looping."""
        if not self._settings.enabled:
            return False
        tokens = self._tokens
        tokens.append(token)
        runs = self._runs
        count = len(tokens)
        min_tokens = self._settings.min_tokens
        min_repeats = self._settings.min_repeats
        fired = False
        for period in range(1, min(self._settings.max_period, count - 1) + 1):
            if tokens[-1] == tokens[-1 - period]:
                runs[period] += 1
                span = runs[period] + period
                if span >= min_tokens and span >= min_repeats * period:
                    fired = True
            else:
                runs[period] = 0
        return fired
