"""Settings, the config file, remote profiles and remembered UI choices (no Textual, no
llama.cpp)."""
