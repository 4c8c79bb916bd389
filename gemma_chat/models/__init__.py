"""Model files: GGUF reading, discovery, name resolution, the demo model, inspection and loading
(no Textual)."""
