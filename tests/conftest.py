"""Shared fixtures: real models loaded once per session.

* The demo model (the real Gemma 3 270M, from the ``demo`` extra), assembled into a
  session cache directory.
* Tiny Gemma 2 GGUFs built with the ``gguf`` package (see ``tinygemma.py``), which make
  the gemma2 code path and its token ids run deterministically.

Environment isolation: every test runs with its own cache/config/data directories unless
it asks for the session cache, so the user's files are never read or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import stories
from hypothesis import HealthCheck, settings
from openai_server import start_server, stop_server
from tinygemma import TinyModel, build_tiny_gemma2

from gemma_chat.backend.local import LlamaBackend, load_vocab
from gemma_chat.backend.offload import OffloadPlan
from gemma_chat.backend.vocab import LlamaVocab
from gemma_chat.config.settings import Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.history.store import HistoryStore

GREEDY = Sampling(temperature=0.0, seed=1, max_tokens=64)

# Under pytest-xdist the workers run llama.cpp at the same time, and ggml's threads spin at
# every barrier of a graph: two workers of two threads each on two cores wait on each other
# far more than they compute (a model-heavy subset took 128 s so, and 53 s with one thread
# per worker). So each worker gets its share of the cores, in-process and in the
# subprocesses and servers it starts (they inherit the environment).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1 and not os.environ.get("GEMMA_CHAT_THREADS"):
    os.environ["GEMMA_CHAT_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))

# Fuzz tests run with a bounded number of examples and no deadline (2 shared cores make
# per-example timing noisy); HYPOTHESIS_PROFILE=deep runs many more by hand.
settings.register_profile(
    "bounded", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by the whole session (holds the assembled demo model)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, session_cache: Path, tmp_path: Path) -> None:
    """Keep tests away from the user's config, data and models."""
    monkeypatch.setenv("GEMMA_CHAT_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("GEMMA_CHAT_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("GEMMA_CHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEMMA_CHAT_MODEL", raising=False)
    monkeypatch.delenv("GEMMA_CHAT_MODELS_DIR", raising=False)
    # The user's Hugging Face cache stays out of discovery, and nothing can reach the
    # real Hub: its endpoint is a loopback port nobody listens on.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def demo_path(session_cache: Path) -> Path:
    """The real Gemma 3 270M GGUF, assembled once."""
    os.environ["GEMMA_CHAT_CACHE_DIR"] = str(session_cache)
    from gemma_chat.models.demo import demo_model

    path = demo_model()
    assert path is not None, "the demo extra is not installed: pip install -e '.[test]'"
    return path


@pytest.fixture(scope="session")
def demo_backend(demo_path: Path) -> Iterator[LlamaBackend]:
    """The demo model loaded once into llama.cpp (2048-token context)."""
    backend = LlamaBackend(
        demo_path, n_ctx=2048, offload=OffloadPlan(0, "cpu"), architecture="gemma3"
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vocab(demo_path: Path) -> LlamaVocab:
    """The demo model's vocabulary alone (no weights): what the scripted backend replays
    replies in, for the Pilot tests. A module may define its own ``vocab``."""
    return load_vocab(demo_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    """A real history store in the test's own folder. A module may define its own."""
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny models are written."""
    return tmp_path_factory.mktemp("tiny")


def _tiny(tiny_dir: Path, name: str, script: tuple[str, ...], **kwargs: object) -> TinyModel:
    return build_tiny_gemma2(tiny_dir / f"{name}.gguf", script, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_models(tiny_dir: Path) -> dict[str, TinyModel]:
    """Every scripted tiny Gemma 2 model, by name."""
    return {
        "runaway": _tiny(tiny_dir, "runaway", stories.RUNAWAY),
        "marker": _tiny(tiny_dir, "marker", stories.MARKER_AS_TEXT),
        "new_turn": _tiny(tiny_dir, "new_turn", stories.NEW_TURN),
        "not_marker": _tiny(tiny_dir, "not_marker", stories.NOT_A_MARKER),
        "long_split": _tiny(tiny_dir, "long_split", stories.LONG_AND_SPLIT),
        "loop": _tiny(tiny_dir, "loop", stories.LOOP, context_length=512),
    }


@pytest.fixture(scope="session")
def tiny_backends(tiny_models: dict[str, TinyModel]) -> Iterator[dict[str, LlamaBackend]]:
    """The tiny models loaded into llama.cpp, once each."""
    # bench/gpu_check.py sets GEMMA_CHAT_TEST_GPU to run these checks on the GPU.
    offload = (
        OffloadPlan(-1, "gpu") if os.environ.get("GEMMA_CHAT_TEST_GPU") else OffloadPlan(0, "cpu")
    )
    backends = {
        name: LlamaBackend(model.path, n_ctx=512, offload=offload, architecture="gemma2")
        for name, model in tiny_models.items()
    }
    yield backends
    for backend in backends.values():
        backend.close()


@pytest.fixture
def tiny_engine(tiny_backends: dict[str, LlamaBackend]):
    """Build a greedy engine on one of the tiny models: ``tiny_engine("runaway")``."""

    def make(name: str, **sampling: object) -> Engine:
        return Engine(tiny_backends[name], GREEDY.model_copy(update=sampling))

    return make


@pytest.fixture(scope="session")
def openai_server(
    demo_path: Path,
    tiny_models: dict[str, TinyModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on a free 127.0.0.1 port.

    It serves the demo model as ``demo`` (listed first: the default) and the tiny Gemma 2
    models ``runaway``, ``marker`` (end marker spelled as plain text) and ``new_turn``
    (opens a new turn with the control token). Yields the base URL,
    ``http://127.0.0.1:PORT/v1``; the server is stopped at the end of the session.
    """
    models = {
        "demo": demo_path,
        **{name: tiny_models[name].path for name in ("runaway", "marker", "new_turn")},
    }
    server = start_server(models, tmp_path_factory.mktemp("openai-server"))
    try:
        yield server.base_url
    finally:
        stop_server(server)


def run_cli(
    *args: str, stdin: bytes | None = b"", timeout: float = 180, env: dict | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m gemma_chat`` in a subprocess with the test environment."""
    return subprocess.run(
        [sys.executable, "-m", "gemma_chat", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
