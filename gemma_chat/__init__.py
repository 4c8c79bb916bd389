"""gemma-chat: a terminal chat application for Gemma models running locally from GGUF files.

Importing the package is cheap: it pulls in neither llama.cpp nor Textual. The heavy
modules are imported by the code paths that need them.
"""

__version__ = "0.1.0"
