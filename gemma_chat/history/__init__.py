"""Conversation history: a crash-safe SQLite store (no Textual, no llama.cpp)."""
