"""``gemma-chat pull``: fetching a GGUF from the Hugging Face Hub."""
