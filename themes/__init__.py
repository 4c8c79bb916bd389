"""The theme files shipped with gemma-chat; installed as the ``gemma_chat.themes`` package."""
