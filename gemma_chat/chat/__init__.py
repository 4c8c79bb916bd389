"""The conversation, the tokenizer protocol, the Gemma template (token and text forms), context
fitting and slash-command parsing (pure)."""
