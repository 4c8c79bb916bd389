"""Sizing: a model's shape, the memory plan and the hardware it runs on (pure, apart from hardware
queries)."""
