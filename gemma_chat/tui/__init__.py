"""The Textual TUI: renders state and posts messages; the core does the work."""
