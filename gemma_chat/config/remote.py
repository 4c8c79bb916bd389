"""Settings for the remote (OpenAI-compatible) backend: which server, which profile, which
key.

The API key itself never goes through the settings: ``api_key_env`` holds the NAME of the
environment variable, read only when the backend is built (:func:`api_key`). No error
message here repeats a key, a URL or a value that could be one.
"""

from __future__ import annotations

import os
from typing import Any

from gemma_chat.errors import UsageError

BACKENDS = ("local", "openai")


def parse_backend(value: str | None) -> str | None:
    """``--backend``: ``local`` or ``openai`` (any case), or None when not given.

    Raises:
        UsageError: Another value.
    """
    if value is None:
        return None
    choice = value.strip().lower()
    if choice not in BACKENDS:
        raise UsageError(f"--backend takes 'local' or 'openai', not {value!r}")
    return choice


def choose_backend(data: dict[str, Any], cli: dict[str, Any]) -> str:
    """The backend this run uses: ``--backend``; else ``openai`` when ``--remote`` or
    ``--base-url`` is given; else the config's ``backend``; else ``openai`` when the
    config names a ``profile``; else ``local``.

    Raises:
        UsageError: ``--backend local`` together with ``--remote`` or ``--base-url``.
    """
    backend = parse_backend(cli.get("backend"))
    remote_option = None
    if cli.get("remote"):
        remote_option = "--remote"
    elif cli.get("base_url"):
        remote_option = "--base-url"
    if backend == "local" and remote_option:
        raise UsageError(f"{remote_option} names a server: it cannot go with --backend local")
    if backend is not None:
        return backend
    if remote_option:
        return "openai"
    configured = data.get("backend")
    if configured in BACKENDS:
        return str(configured)
    return "openai" if data.get("profile") else "local"


def apply_remote(data: dict[str, Any], cli: dict[str, Any], config_model: Any) -> None:
    """Fill ``data`` (the config, being merged with the command line) for the openai
    backend: the profile's values first, then the command line's, which win.

    The model is ``--model``, else the profile's, else the config's own ``model`` when
    the config itself chose the openai backend (a local file name is never sent to a
    server); ``$GEMMA_CHAT_MODEL`` names a local model and is ignored.

    Args:
        data: The config values (changed in place).
        cli: The command-line values, None where not given.
        config_model: The config file's top-level ``model`` when the config itself sets
            ``backend = "openai"`` (a server model id), else None.

    Raises:
        UsageError: An unknown profile, or no base URL at all.
    """
    data["backend"] = "openai"
    name = cli.get("remote") or data.get("profile")
    model = config_model
    if name:
        profiles = data.get("remote") or {}
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none (add a [remote.NAME] table)"
            raise UsageError(f"no remote profile {name!r} in the config; profiles: {known}")
        profile = profiles[name]
        for key in ("base_url", "api_key_env", "ctx", "timeout", "reply_timeout"):
            if profile.get(key) is not None:
                data[key] = profile[key]
        if profile.get("model"):
            model = profile["model"]
        data["profile"] = name
    for key in ("base_url", "ctx"):
        if cli.get(key) is not None:
            data[key] = cli[key]
    data["model"] = cli.get("model") or model or None
    if not data.get("base_url"):
        raise UsageError(
            "the openai backend needs a server: --base-url URL, --remote NAME, or "
            "base_url in the config"
        )


def api_key(api_key_env: str | None, profile: str | None = None) -> str | None:
    """Read the API key from the environment variable ``api_key_env`` names.

    Returns:
        The key, or None when no variable is named (no key is sent).

    Raises:
        UsageError: The variable is not set or empty (before any request is made).
    """
    if api_key_env is None:
        return None
    value = os.environ.get(api_key_env, "")
    where = f"api_key_env (in [remote.{profile}])" if profile else "api_key_env"
    key = value.strip()
    if key and not all("!" <= ch <= "~" for ch in key):
        # An HTTP library rejects such a header and quotes it in its error: refuse it
        # here, in words that never repeat the key.
        raise UsageError(
            f"the API key in the variable {where} names contains spaces, line breaks or "
            "non-ASCII characters; an HTTP header cannot carry it"
        )
    if key:
        return key
    # Variable names are conventionally upper case; anything else might be a key pasted
    # into the wrong setting, and is not repeated.
    shown = f"${api_key_env}" if api_key_env.isupper() and len(api_key_env) <= 64 else "a variable"
    raise UsageError(f"{where} names {shown}, which is not set or empty: export the API key in it")
