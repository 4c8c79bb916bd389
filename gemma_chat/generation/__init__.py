"""One model reply, streamed: reply events, the engine, UTF-8/marker streaming and the repetition
guard (no Textual)."""
