"""The one documented settings object, built by the CLI and passed down.

Every field has a docstring; the config file (TOML) uses the same names. Nothing here has
side effects at import time.
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gemma_chat.config.plain_errors import plain_message
from gemma_chat.errors import UsageError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INT32_MAX = 2**31 - 1
"""llama.cpp takes counts as C ints: a larger value would wrap, so it is refused."""
MAX_THREADS = 512
"""ggml's GGML_MAX_N_THREADS; llama.cpp aborts the process on more."""
THREADS_ENV = "GEMMA_CHAT_THREADS"
"""The thread count when ``--threads`` gives none; it wins over the config file's."""


def threads_from_env() -> int | None:
    """``$GEMMA_CHAT_THREADS`` as a thread count (None when unset or empty).

    Raises:
        UsageError: It is not a whole number from 1 to ``MAX_THREADS``.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    value = int(raw) if raw.isascii() and raw.isdecimal() and len(raw) < 6 else 0
    if not 1 <= value <= MAX_THREADS:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise UsageError(
            f"{THREADS_ENV} takes a number of threads from 1 to {MAX_THREADS}, not {shown!r}"
        )
    return value


def check_base_url(value: str) -> str:
    """An http(s) URL with a host and nothing after the path; the trailing slash dropped.

    The URL is never repeated in the error: it might carry a password.

    Raises:
        ValueError: Anything else.
    """
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("needs an http:// or https:// URL with a host, e.g. http://host:8080/v1")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials: name the key's variable in api_key_env")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value.rstrip("/")


def check_env_name(value: str) -> str:
    """An environment variable name (never the key itself, which is not repeated).

    Raises:
        ValueError: The value cannot be a variable name.
    """
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "names the environment variable that holds the key (letters, digits and _), "
            "not the key itself"
        )
    return value


def check_path_text(value: str) -> str:
    """A file name or path: any text but NUL, which no operating system takes in a path.

    Raises:
        ValueError: The value holds a NUL character.
    """
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


BaseUrl = Annotated[str, AfterValidator(check_base_url)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
"""A remote timeout: more than 0, at most a day."""
PathText = Annotated[str, AfterValidator(check_path_text)]
EnvName = Annotated[str, AfterValidator(check_env_name)]


class Sampling(BaseModel):
    """How the next token is chosen.

    The defaults are Google's recommended Gemma sampling settings (temperature 1.0,
    top-k 64, top-p 0.95, min-p 0, no repetition penalty).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    temperature: float = Field(1.0, ge=0.0, le=5.0)
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    top_k: int = Field(64, ge=0, le=INT32_MAX)
    """Keep only the k most likely tokens (0 disables the filter)."""
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    """Drop tokens less likely than min_p times the most likely token."""
    repeat_penalty: float = Field(1.0, ge=0.5, le=3.0)
    """Penalty on recently generated tokens; 1.0 disables it."""
    seed: int | None = Field(None, ge=0, lt=2**32 - 1)
    """Random seed; the same seed, prompt and model give the same reply. None picks one."""
    max_tokens: int = Field(1024, ge=1)
    """The most tokens one reply may have."""


SAMPLING_KEYS: tuple[str, ...] = tuple(Sampling.model_fields)
"""The sampling parameters by name, in the documented order: what ``/set`` accepts, what a
conversation stores and what ``ask --continue`` carries over."""


class RepeatGuard(BaseModel):
    """Stops a reply that keeps repeating the same span with nothing new."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    """Whether the guard is on."""
    min_tokens: int = Field(64, ge=4)
    """How many trailing tokens must be one repeating span before the guard fires."""
    min_repeats: int = Field(3, ge=2)
    """How many whole copies of the span must appear in that tail."""
    max_period: int = Field(128, ge=1)
    """The longest span (in tokens) the guard looks for."""


class KVCacheSettings(BaseModel):
    """The per-conversation cache of llama.cpp's KV state, which makes resuming a long
    conversation fast. Files live in the cache directory and can be deleted at any time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    """Save the KV state when leaving a conversation and restore it on resume."""
    max_mb: int = Field(4096, ge=0)
    """The most disk space all saved states may take together; the least recently used
    ones are deleted first. 0 disables saving."""
    min_tokens: int = Field(512, ge=1)
    """Conversations shorter than this are not cached: re-evaluating them is quick."""


class RemoteProfile(BaseModel):
    """A named OpenAI-compatible server, ``[remote.NAME]`` in the config, picked with
    ``--remote NAME``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: BaseUrl
    """The server's OpenAI API root, e.g. ``http://gpu-box:8080/v1``."""
    api_key_env: EnvName | None = None
    """The NAME of the environment variable holding the API key (never the key itself)."""
    model: str | None = None
    """The model id on the server. Unset: the first one ``GET /v1/models`` lists."""
    ctx: int | None = Field(None, ge=1)
    """The server's context size in tokens. Unset: asked from the server, else 8192."""
    timeout: Seconds | None = None
    """Seconds this server may stay silent (see ``Settings.timeout``). Unset: the
    top-level value."""
    reply_timeout: Seconds | None = None
    """The most seconds one reply from this server may take in all (see
    ``Settings.reply_timeout``). Unset: the top-level value."""


class SavedPrompt(BaseModel):
    """A saved prompt: ``[prompts.NAME]`` in the config, or ``NAME.toml`` in the prompts
    folder beside it; ``ask -p NAME`` and ``/prompt NAME`` use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    """One line for ``gemma-chat prompts``."""
    system: str | None = None
    """The system text, folded into the first user turn (wins over the config's)."""
    template: str | None = None
    """The user message, with ``{input}`` where the question (and piped text) goes;
    without ``{input}`` the input follows it after a blank line. Unset: the input alone."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    """Sampling overrides (``temperature``, ``max_tokens``...): over the config's, under
    the command line's."""
    schema_: str | dict[str, Any] | None = Field(None, alias="schema")
    """A JSON Schema the reply must match: a TOML table, JSON text, ``@file.json``
    (relative to the file that defines the prompt) or the concise form."""

    @field_validator("schema_")
    @classmethod
    def _json_schema_table(cls, value: Any) -> Any:
        # A TOML table may hold dates and times, which JSON (and so a schema) cannot.
        if isinstance(value, dict):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(
                    "the schema holds a value JSON cannot carry (a TOML date or time?)"
                ) from None
        return value

    @field_validator("sampling")
    @classmethod
    def _known_sampling(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The same names and ranges as ``[sampling]``, and the values as it converts
        them (``"0.2"`` is 0.2, ``8.0`` is 8): the app applies them as they are."""
        try:
            sampling = Sampling.model_validate(value)
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            where = ".".join(str(part) for part in first["loc"])
            message = plain_message(first)
            raise ValueError(f"{where}: {message}" if where else message) from None
        return sampling.model_dump(include=set(value))

    @property
    def conversation_settings(self) -> frozenset[str]:
        """The conversation settings this prompt sets (its system text, its sampling
        keys): like the command line's, they win over a continued conversation's own."""
        system = {"system"} if self.system is not None else set()
        return frozenset({*system, *self.sampling})

    def fill(self, message: str) -> str:
        """The user message this prompt makes of ``message``."""
        if not self.template:
            return message
        if "{input}" in self.template:
            return self.template.replace("{input}", message)
        return f"{self.template.rstrip()}\n\n{message}"


class Settings(BaseModel):
    """Everything that decides how gemma-chat loads a model and generates a reply."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backend: Literal["local", "openai"] = "local"
    """Where the model runs: ``local`` (llama.cpp in this process) or ``openai`` (an
    OpenAI-compatible server at ``base_url``: llama-server, vLLM, Ollama)."""
    base_url: BaseUrl | None = None
    """The server's OpenAI API root for ``backend = "openai"``, e.g.
    ``http://127.0.0.1:8080/v1``."""
    api_key_env: EnvName | None = None
    """The NAME of the environment variable holding the server's API key (the key itself
    never goes in the config or on the command line). Unset: no key is sent."""
    timeout: Seconds = 60.0
    """Seconds an OpenAI-compatible server may stay silent before the request fails; the
    model check (``GET /models``) must also be complete within it."""
    reply_timeout: Seconds = 600.0
    """The most seconds one streamed reply from a server may take in all, however steadily
    it trickles; past it the reply stops, kept and marked partial."""
    prompts: dict[str, SavedPrompt] = Field(default_factory=dict)
    """Saved prompts, ``[prompts.NAME]`` tables (see :class:`SavedPrompt`)."""
    remote: dict[str, RemoteProfile] = Field(default_factory=dict)
    """Named servers, ``[remote.NAME]`` tables; ``--remote NAME`` picks one."""
    profile: str | None = None
    """The ``[remote.NAME]`` profile to use (``--remote NAME``); it implies the openai
    backend and fills base_url, api_key_env, model, ctx, timeout and reply_timeout unless
    the command line sets them."""
    model: PathText | None = None
    """The GGUF model: a path, a short name (file stem or alias, see ``gemma-chat models``)
    or ``demo``. Unset: ``$GEMMA_CHAT_MODEL``, then the demo model. With the openai
    backend: the model id on the server (unset: the first one it lists)."""
    system: str | None = None
    """System prompt, folded into the first user turn (Gemma has no system role)."""
    ctx: int | None = Field(None, ge=1)
    """Context window in tokens; unset means min(trained context, 8192). Rounded up to 256.
    With the openai backend: the server's context size (unset: asked from the server)."""
    gpu: bool | None = None
    """Offload layers to the GPU. Unset: use the GPU when the llama.cpp build supports it."""
    gpu_layers: Annotated[int, Field(ge=0, le=INT32_MAX, strict=True)] | Literal["all", "auto"] = (
        "auto"
    )
    """How many layers to offload when the GPU is used: a number, "all", or "auto" (the
    most that fit in free VRAM with a safety margin; none on a build without GPU support)."""
    models_dir: PathText | None = None
    """Where ``pull`` puts models and discovery looks first. Unset:
    ``$GEMMA_CHAT_MODELS_DIR``, then ``<data dir>/models``."""
    model_paths: list[PathText] = Field(default_factory=list)
    """More GGUF files or folders for ``gemma-chat models`` to list."""
    aliases: dict[str, PathText] = Field(default_factory=dict)
    """Short model names: ``name = "path/to/file.gguf"`` (``--model name`` then works)."""
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    """CPU threads for llama.cpp (at most 512, ggml's limit). ``--threads`` wins, then
    ``$GEMMA_CHAT_THREADS``, then this; unset everywhere means every core this process
    may use."""
    flash_attn: bool = True
    """Use flash attention. llama.cpp's own default ("auto") turns it on for CPU and CUDA;
    llama-cpp-python turns it off, which costs about 4% of decode speed here."""
    speculative: Literal["auto", "off", "lookup", "draft"] = "off"
    """Speculative decoding for local models: ``lookup`` drafts the next tokens from
    n-gram matches in the prompt and the reply so far, ``draft`` from a small
    ``draft_model``; the model verifies each draft in one batch and keeps only what it
    samples itself (greedy output can still differ where two tokens are nearly tied:
    llama.cpp's CPU kernels round differently by batch size). ``auto``: ``draft`` when a
    draft model is set, else ``lookup``. ``off`` (the default, until an idle measurement
    shows a gain): plain decoding."""
    draft_model: PathText | None = None
    """A small GGUF with the same vocabulary (e.g. Gemma 2 2B for 9B or 27B) that drafts
    for ``speculative = "draft"``: a path or a short name."""
    theme: str | None = None
    """Name of the TUI theme (a theme picked in the app is remembered and wins)."""
    keys: dict[str, str] = Field(default_factory=dict)
    """Key remapping for the TUI: binding id (see F1) to keys, e.g. "gemma.retry" = "f5"."""
    sampling: Sampling = Field(default_factory=Sampling)
    """Sampling parameters."""
    repeat_guard: RepeatGuard = Field(default_factory=RepeatGuard)
    """The repetition-loop guard."""
    save_history: bool = True
    """Save conversations to the history database (``ask --no-save`` skips one)."""
    state_cache: KVCacheSettings = Field(default_factory=KVCacheSettings)
    """The KV state cache for resuming conversations."""
    long_input: Literal["map", "refuse"] = "map"
    """An ``ask`` input larger than the context: answer it part by part and combine the
    notes (``map``), or refuse it (``refuse``). ``--long`` overrides it."""
    context_policy: Literal["drop", "compact"] = "drop"
    """When a chat in the app no longer fits the context: leave the oldest turns out
    (``drop``), or have the model summarise them first (``compact``, as ``/compact``)."""
    debug: bool = False
    """Show llama.cpp's log and full tracebacks."""
