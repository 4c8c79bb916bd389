"""``gemma-chat pull``: alias resolution, the offline and unreachable-Hub errors, picking
a file from a real Hugging Face cache under ``HF_HUB_OFFLINE=1`` and loading it, and the
download path (resume, sha256 check) against a stand-in Hub on a loopback port.

No test reaches the network: HF_ENDPOINT points at a closed loopback port or at
``fakehub.FakeHub``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from fakehub import COMMIT, FakeHub, Repo

from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.pull.catalog import ALIASES, pick_file, quant_of, resolve_spec
from gemma_chat.units import format_bytes

REPO_9B = "bartowski/gemma-2-9b-it-GGUF"
FILE_9B = "gemma-2-9b-it-Q4_K_M.gguf"


# --- (1) naming: aliases, quantizations, repositories --------------------------------

EXPECTED_ALIASES = {
    "gemma2:2b": ("bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-{}.gguf"),
    "gemma2:9b": ("bartowski/gemma-2-9b-it-GGUF", "gemma-2-9b-it-{}.gguf"),
    "gemma2:27b": ("bartowski/gemma-2-27b-it-GGUF", "gemma-2-27b-it-{}.gguf"),
    "gemma3:270m": ("unsloth/gemma-3-270m-it-GGUF", "gemma-3-270m-it-{}.gguf"),
    "gemma3:1b": ("unsloth/gemma-3-1b-it-GGUF", "gemma-3-1b-it-{}.gguf"),
}


def test_the_alias_table_is_the_documented_one() -> None:
    assert set(ALIASES) == set(EXPECTED_ALIASES)


@pytest.mark.parametrize("alias", sorted(EXPECTED_ALIASES))
@pytest.mark.parametrize("quant", [None, "Q4_K_M", "Q6_K", "q8_0", "IQ4_XS"])
def test_each_alias_resolves_to_its_repository_and_file(alias: str, quant: str | None) -> None:
    repo, pattern = EXPECTED_ALIASES[alias]
    wanted = (quant or "Q4_K_M").upper()
    for target in (resolve_spec(alias, quant=quant), resolve_spec(f"{alias}:{quant or 'Q4_K_M'}")):
        assert (target.repo, target.filename, target.quant) == (
            repo,
            pattern.format(wanted),
            wanted,
        )
        assert target.alias == alias


def test_repository_specs() -> None:
    assert resolve_spec(REPO_9B).quant == "Q4_K_M" and resolve_spec(REPO_9B).filename is None
    assert resolve_spec(f"hf.co/{REPO_9B}:q6_k").quant == "Q6_K"
    assert resolve_spec(REPO_9B, quant="Q5_K_M").repo == REPO_9B
    target = resolve_spec(REPO_9B, FILE_9B, revision="v1")
    assert (target.filename, target.quant, target.revision) == (FILE_9B, None, "v1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gemma2:10b",), "unknown model 'gemma2:10b': use a built-in alias (gemma2:2b"),
        (("gemma2",), "unknown model"),
        (("llama3:8b",), "unknown model"),
        (("gemma2:9b:Q4KM",), "'Q4KM' is not a GGUF quantization name"),
        (("gemma2:9b", None, "Q9_K"), "'Q9_K' is not a GGUF quantization name"),
        (("gemma2:9b", None, "Q5_K_M:x"), "not a GGUF quantization name"),
        (("gemma2:9b:Q6_K", None, "Q8_0"), "names Q6_K, but --quant says Q8_0"),
        (("gemma2:9b", FILE_9B), "use --quant, not FILE"),
        (("gemma2:9b", None, "F16"), "offers quantized files"),
        ((REPO_9B, FILE_9B, "Q4_K_M"), "give FILE or a quantization, not both"),
        ((REPO_9B, "../../etc/passwd.gguf"), "not a file path inside a repository"),
        ((REPO_9B, "README.md"), "not a GGUF file"),
        (("bartowski/../x",), "not a Hugging Face repository id"),
        (("a/b/c",), "not a Hugging Face repository id"),
    ],
)
def test_bad_names_are_usage_errors(args: tuple, message: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        resolve_spec(*args)
    assert message in str(caught.value)


LISTING = [
    ".gitattributes",
    "README.md",
    "gemma-2-9b-it-Q4_K_M.gguf",
    "gemma-2-9b-it-Q4_K_L.gguf",
    "gemma-2-9b-it-Q4_K_S.gguf",
    "gemma-2-9b-it-IQ4_XS.gguf",
    "gemma-2-9b-it-UD-Q6_K_XL.gguf",
    "mmproj-gemma-2-9b-it-Q4_K_M.gguf",
    "big/gemma-2-9b-it-f32-00001-of-00002.gguf",
    "big/gemma-2-9b-it-f32-00002-of-00002.gguf",
]


def test_picking_a_file_by_quantization() -> None:
    assert pick_file(LISTING, "Q4_K_M", REPO_9B) == "gemma-2-9b-it-Q4_K_M.gguf"
    assert pick_file(LISTING, "iq4_xs", REPO_9B) == "gemma-2-9b-it-IQ4_XS.gguf"
    assert pick_file(LISTING, "UD-Q6_K_XL", REPO_9B) == "gemma-2-9b-it-UD-Q6_K_XL.gguf"
    assert quant_of("x/gemma-2-2b-it.q4_k_m.gguf") == "Q4_K_M"
    with pytest.raises(GemmaChatError) as several:
        pick_file(LISTING, "F32", REPO_9B)
    assert "matches 2 files" in str(several.value)
    assert "big/gemma-2-9b-it-f32-00001-of-00002.gguf" in str(several.value)
    with pytest.raises(GemmaChatError) as none:
        pick_file(LISTING, "Q6_K_XL", REPO_9B)  # unsloth's UD-Q6_K_XL is another recipe
    assert str(none.value) == (
        f"{REPO_9B} has no Q6_K_XL GGUF; it has: F32, IQ4_XS, Q4_K_L, Q4_K_M, Q4_K_S, UD-Q6_K_XL"
    )
    with pytest.raises(GemmaChatError, match="has no GGUF files"):
        pick_file(["README.md"], "Q4_K_M", REPO_9B)


# --- helpers for the subprocess tests ------------------------------------------------


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face home (no token, no cache) and no telemetry."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "GEMMA_CHAT_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never the real Hub
    return home / "hub"


@pytest.fixture
def closed_port() -> Iterator[str]:
    """An HF_ENDPOINT nobody listens on: a loopback port bound but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "models"  # conftest points GEMMA_CHAT_DATA_DIR at tmp/data


def ggufs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.gguf")) if folder.exists() else []


def one_line_error(proc, text: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: error: "), err
    assert text in err, err
    assert "Traceback" not in err
    assert proc.stdout == b""
    return err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- (2) no network: one clear line, nothing left behind -----------------------------


@pytest.mark.slow
def test_unreachable_hub_is_one_line_and_leaves_nothing(hf_env, closed_port, tmp_path) -> None:
    proc = run_cli("pull", "gemma2:9b", env={"HF_ENDPOINT": closed_port})
    err = one_line_error(proc, f"the Hub at {closed_port} cannot be reached")
    assert f"{REPO_9B}/{FILE_9B} is not in the Hugging Face cache" in err
    assert "--model PATH.gguf" in err
    assert not models_dir(tmp_path).exists() or not any(models_dir(tmp_path).iterdir())

    proc = run_cli("pull", REPO_9B, "--quant", "Q6_K", env={"HF_ENDPOINT": closed_port})
    one_line_error(proc, "cannot be reached")


@pytest.mark.slow
def test_offline_mode_without_a_cached_copy(hf_env, tmp_path) -> None:
    proc = run_cli("pull", "gemma2:2b", env={"HF_HUB_OFFLINE": "1"})
    err = one_line_error(proc, "HF_HUB_OFFLINE is set and bartowski/gemma-2-2b-it-GGUF/")
    assert "unset HF_HUB_OFFLINE to download it" in err
    assert ggufs(models_dir(tmp_path)) == []


@pytest.mark.slow
def test_a_hub_that_never_answers_times_out(hf_env) -> None:
    with socket.socket() as sock:  # accepts connections (the backlog), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        proc = run_cli(
            "pull", "gemma2:9b", env={"HF_ENDPOINT": url, "HF_HUB_ETAG_TIMEOUT": "1"}, timeout=60
        )
        elapsed = time.monotonic() - started
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count(b"\n") == 1
    assert elapsed < 30


def test_usage_errors_exit_2(hf_env) -> None:
    proc = run_cli("pull", "gemma2:10b")
    assert proc.returncode == 2 and b"unknown model" in proc.stderr
    assert b"Traceback" not in proc.stderr
    proc = run_cli("pull")
    assert proc.returncode == 2 and b"pull needs a MODEL" in proc.stderr
    listing = run_cli("pull", "--list", "--json")
    assert listing.returncode == 0
    assert json.loads(listing.stdout)["gemma2:27b"]["repo"] == "bartowski/gemma-2-27b-it-GGUF"


# --- (3) the Hugging Face cache, offline ----------------------------------------------


def fill_cache(cache: Path, repo: str, files: dict[str, bytes]) -> dict[str, Path]:
    """Populate a Hugging Face cache the supported way: huggingface_hub's own
    ``hf_hub_download`` writes it (refs/main, snapshots/<commit>/ -> ../../blobs/<sha>),
    fed by the stand-in Hub."""
    from huggingface_hub import hf_hub_download

    with FakeHub({repo: Repo(files)}) as hub:
        return {
            name: Path(hf_hub_download(repo, name, cache_dir=cache, endpoint=hub.url))
            for name in files
        }


@pytest.mark.slow
def test_offline_pull_installs_from_the_hub_cache_and_the_model_loads(
    hf_env, tiny_models, tmp_path
) -> None:
    data = tiny_models["runaway"].path.read_bytes()
    cached = fill_cache(hf_env, REPO_9B, {FILE_9B: data, "README.md": b"# readme\n"})[FILE_9B]
    blob = cached.resolve()
    # The layout huggingface_hub wrote and reads back: the blob is named by its sha256.
    assert cached.is_symlink() and blob.name == hashlib.sha256(data).hexdigest()
    assert (hf_env / "models--bartowski--gemma-2-9b-it-GGUF" / "refs" / "main").read_text() == (
        COMMIT
    )

    proc = run_cli("pull", "gemma2:9b", "--json", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    installed = models_dir(tmp_path) / FILE_9B
    assert result == {
        "repo": REPO_9B,
        "filename": FILE_9B,
        "revision": COMMIT,
        "path": str(installed),
        "size": len(data),
        "sha256": blob.name,
        "verified": True,
        "source": "hf-cache",
        "how": "hardlink",
    }
    assert installed.is_file() and not installed.is_symlink()
    assert os.path.samefile(installed, blob)  # no second copy of the weights
    assert ggufs(models_dir(tmp_path)) == [FILE_9B]  # nothing else: no partial, no temp

    # Again: nothing to do; by repository and quantization, from the cached listing.
    again = run_cli("pull", REPO_9B, "--quant", "Q4_K_M", env={"HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode() == f"{installed}\n"
    assert b"already in" in again.stderr and b"up to date" in again.stderr

    # A real llama.cpp load of the installed file, by path and by its short name (the
    # hard link and the cache entry are one file, so the name is not ambiguous).
    for model in (str(installed), installed.stem):
        ask = run_cli("ask", "--model", model, "--max-tokens", "2", "--no-save", "hi")
        assert ask.returncode == 0, ask.stderr
        assert ask.stdout.strip()


@pytest.mark.slow
def test_unreachable_hub_falls_back_to_the_cache(hf_env, tiny_models, closed_port, tmp_path):
    fill_cache(hf_env, REPO_9B, {FILE_9B: tiny_models["marker"].path.read_bytes()})
    proc = run_cli("pull", "gemma2:9b", env={"HF_ENDPOINT": closed_port})
    assert proc.returncode == 0, proc.stderr
    assert b"cannot be reached" in proc.stderr and b"using the copy in the Hugging" in proc.stderr
    assert ggufs(models_dir(tmp_path)) == [FILE_9B]


@pytest.mark.slow
def test_a_corrupt_cached_copy_is_refused_and_dropped(hf_env, tiny_models, tmp_path) -> None:
    data = tiny_models["runaway"].path.read_bytes()
    cached = fill_cache(hf_env, REPO_9B, {FILE_9B: data})[FILE_9B]
    blob = cached.resolve()
    with blob.open("r+b") as handle:  # flip one byte of the weights
        handle.seek(blob.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    proc = run_cli("pull", "gemma2:9b", env={"HF_HUB_OFFLINE": "1"})
    one_line_error(proc, "does not match the Hub's")
    assert ggufs(models_dir(tmp_path)) == []
    assert not blob.exists() and not cached.is_symlink()  # the next pull downloads anew


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("where", ["ref", "target"])
def test_a_fifo_in_the_cache_or_the_models_dir_cannot_hang_pull(
    hf_env, tiny_models, tmp_path, where
) -> None:
    """A FIFO at the cache's ``refs/main`` or at the file pull would install (both under
    folders the user chooses) blocked an unbounded read forever (nothing ever writes
    it). Now the ref counts as absent and the target as a file in the way."""
    fill_cache(hf_env, REPO_9B, {FILE_9B: tiny_models["runaway"].path.read_bytes()})
    if where == "ref":
        ref = hf_env / "models--bartowski--gemma-2-9b-it-GGUF" / "refs" / "main"
        ref.unlink()
        os.mkfifo(ref)
    else:
        models_dir(tmp_path).mkdir(parents=True)
        os.mkfifo(models_dir(tmp_path) / FILE_9B)
    # By repository and quantization: pull reads the ref itself to list the files.
    spec = [REPO_9B, "--quant", "Q4_K_M"] if where == "ref" else ["gemma2:9b"]
    proc = run_cli("pull", *spec, env={"HF_HUB_OFFLINE": "1"}, timeout=120)
    one_line_error(
        proc, "not in the Hugging Face cache" if where == "ref" else "not a regular file"
    )


# --- the download path, against the stand-in Hub -------------------------------------


@pytest.fixture
def hub(hf_env, tiny_models) -> Iterator[FakeHub]:
    files = {
        FILE_9B: tiny_models["runaway"].path.read_bytes(),
        "gemma-2-9b-it-Q6_K.gguf": tiny_models["marker"].path.read_bytes(),
        "gemma-2-9b-it-Q6_K_L.gguf": b"GGUF" + b"\0" * 100,
        "README.md": b"# readme\n",
    }
    repos = {
        REPO_9B: Repo(files),
        "google/gated-GGUF": Repo({"x-Q4_K_M.gguf": b"GGUF"}, gated=True),
        "someone/split-GGUF": Repo(
            {"m-Q8_0-00001-of-00002.gguf": b"1", "m-Q8_0-00002-of-00002.gguf": b"2"}
        ),
    }
    with FakeHub(repos) as server:
        yield server


def pull_from(hub: FakeHub, *args: str):
    return run_cli("pull", *args, env={"HF_ENDPOINT": hub.url})


@pytest.mark.slow
def test_download_is_verified_and_installed(hub, tmp_path) -> None:
    proc = pull_from(hub, "gemma2:9b")
    assert proc.returncode == 0, proc.stderr
    installed = models_dir(tmp_path) / FILE_9B
    assert proc.stdout.decode() == f"{installed}\n"
    assert installed.read_bytes() == hub.repos[REPO_9B].files[FILE_9B]
    assert b"sha256 verified, downloaded" in proc.stderr
    assert sorted(p.name for p in models_dir(tmp_path).iterdir()) == [FILE_9B]


@pytest.mark.slow
def test_repository_and_quant_picks_from_the_listing(hub, tmp_path) -> None:
    proc = pull_from(hub, REPO_9B, "--quant", "Q6_K", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["filename"] == "gemma-2-9b-it-Q6_K.gguf"
    assert ggufs(models_dir(tmp_path)) == ["gemma-2-9b-it-Q6_K.gguf"]

    split = pull_from(hub, "someone/split-GGUF", "--quant", "Q8_0")
    one_line_error(split, "Q8_0 matches 2 files in someone/split-GGUF: m-Q8_0-00001-of-00002")


BIG = "gemma-2-9b-it-Q8_0.gguf"


@pytest.mark.slow
def test_an_interrupted_download_resumes_where_it_stopped(hub, tmp_path) -> None:
    # Larger than huggingface_hub's 10 MiB write piece, so that a piece reaches the disk.
    data = b"GGUF" + os.urandom(12 * 2**20)
    hub.repos[REPO_9B].files[BIG] = data
    hub.behaviour.cut_after, hub.behaviour.refuse_ranges = 11 * 2**20, True
    first = pull_from(hub, "gemma2:9b:Q8_0")
    err = one_line_error(first, "run the same pull again to resume the download")
    partials = list(models_dir(tmp_path).glob(".*.partial"))
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    assert 0 < kept <= 11 * 2**20 and partials[0].read_bytes() == data[:kept], err
    assert ggufs(models_dir(tmp_path)) == []  # nothing half-valid looks like a model

    hub.behaviour.cut_after, hub.behaviour.refuse_ranges = None, False
    hub.requests.clear()
    second = pull_from(hub, "gemma2:9b:Q8_0")
    assert second.returncode == 0, second.stderr
    assert hub.ranges() == [f"bytes={kept}-"]  # only the missing part travelled
    assert f"resuming {BIG} at ".encode() in second.stderr
    assert (models_dir(tmp_path) / BIG).read_bytes() == data
    assert sorted(p.name for p in models_dir(tmp_path).iterdir()) == [BIG]


@pytest.mark.slow
def test_ctrl_c_keeps_the_partial_download_for_the_next_run(hub, tmp_path) -> None:
    data = b"GGUF" + os.urandom(12 * 2**20)
    hub.repos[REPO_9B].files[BIG] = data
    hub.behaviour.stall_after = 11 * 2**20
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "pull", "gemma2:9b:Q8_0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_ENDPOINT": hub.url},
    )
    deadline = time.monotonic() + 60
    while not [p for p in models_dir(tmp_path).glob(".*.partial") if p.stat().st_size]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == b"" and b"Traceback" not in err
    (partial,) = models_dir(tmp_path).glob(".*.partial")
    kept = partial.stat().st_size
    assert partial.read_bytes() == data[:kept]
    note = f"stopped: {format_bytes(kept)} of {BIG} kept; run the same pull again to resume"
    assert note.encode() in err
    assert ggufs(models_dir(tmp_path)) == []

    hub.behaviour.stall_after = None
    hub.requests.clear()
    again = pull_from(hub, "gemma2:9b:Q8_0")
    assert again.returncode == 0, again.stderr
    assert hub.ranges() == [f"bytes={kept}-"]
    assert (models_dir(tmp_path) / BIG).read_bytes() == data


def test_importing_pull_costs_other_commands_nothing() -> None:
    code = (
        "import sys, gemma_chat.cli, gemma_chat.pull.download, gemma_chat.pull.transfer, "
        "gemma_chat.pull.catalog; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('huggingface_hub', 'httpx2', 'textual', 'llama_cpp')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_a_download_that_does_not_match_the_sha256_is_deleted(hub, tmp_path) -> None:
    real = hub.repos[REPO_9B].files[FILE_9B]
    hub.repos[REPO_9B].served[FILE_9B] = real[:-1] + bytes([real[-1] ^ 1])
    proc = pull_from(hub, "gemma2:9b")
    one_line_error(proc, "does not match the Hub's")
    assert "the download was deleted; run pull again" in proc.stderr.decode()
    assert not models_dir(tmp_path).exists() or not any(models_dir(tmp_path).iterdir())


@pytest.mark.slow
def test_a_different_file_of_the_same_name_needs_force(hub, tmp_path) -> None:
    target = models_dir(tmp_path) / FILE_9B
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF my own file")
    proc = pull_from(hub, "gemma2:9b")
    one_line_error(proc, "already exists and is not this download")
    assert target.read_bytes() == b"GGUF my own file"
    forced = pull_from(hub, "gemma2:9b", "--force")
    assert forced.returncode == 0, forced.stderr
    assert sha256(target) == hashlib.sha256(hub.repos[REPO_9B].files[FILE_9B]).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("gemma2:9b:Q2_K",),
            f"{REPO_9B} has no file gemma-2-9b-it-Q2_K.gguf; its "
            "quantizations: Q4_K_M, Q6_K, Q6_K_L",
        ),
        (
            ("nobody/nothing-GGUF", "--quant", "Q4_K_M"),
            "repository nobody/nothing-GGUF was "
            "not found on the Hub (if it is private, log in with `hf auth login`",
        ),
        (
            ("google/gated-GGUF", "x-Q4_K_M.gguf"),
            "google/gated-GGUF is gated: accept its "
            "terms on https://huggingface.co/google/gated-GGUF",
        ),
    ],
)
def test_hub_errors_are_one_line(hub, tmp_path, args, message) -> None:
    one_line_error(pull_from(hub, *args), message)
    assert ggufs(models_dir(tmp_path)) == []
