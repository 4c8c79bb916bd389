"""The TUI's modal screens."""
