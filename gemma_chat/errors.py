"""Errors that carry a one-line message for the user and an exit code."""

from __future__ import annotations


class GemmaChatError(Exception):
    """An error the user can act on.

    The CLI prints ``str(error)`` as one line on stderr and exits with ``exit_code``;
    the TUI shows the same line in the interface. Tracebacks only appear with ``--debug``.
    """

    exit_code = 1


class UsageError(GemmaChatError):
    """The command line or its input was wrong (exit code 2)."""

    exit_code = 2


class ModelError(GemmaChatError):
    """A model file is missing, unreadable, malformed or not a Gemma chat model."""


class ContextError(GemmaChatError):
    """The newest message cannot fit into the context window."""
