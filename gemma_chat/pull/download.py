"""``gemma-chat pull``: fetch a Gemma GGUF from the Hugging Face Hub into the models folder.

Where the file ends up: ``<models dir>/<file name>``, a plain ``.gguf`` that ``gemma-chat
models`` lists and ``--model <stem>`` loads. The download goes there directly (resumable,
see :mod:`gemma_chat.pull.transfer`), not through the Hugging Face cache; a file the cache
already holds (downloaded by another tool, or under ``HF_HUB_OFFLINE=1``) is hard-linked
from it instead of downloaded again.

Verified: every GGUF on the Hub is stored with Git LFS, so the Hub publishes its sha256
(the ``X-Linked-Etag`` of the file's HEAD response, which huggingface_hub also uses to
name cache blobs). ``pull`` hashes the file and compares before installing it.

huggingface_hub is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gemma_chat.errors import GemmaChatError
from gemma_chat.pull import transfer as pull_files
from gemma_chat.pull.catalog import Target, pick_file

LIBRARY = "gemma-chat"


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` installed."""

    repo: str
    filename: str
    revision: str | None
    """The commit the file came from, when known."""
    path: str
    size: int
    sha256: str
    verified: bool
    """The sha256 matched the one the Hub published (False: the Hub's was unknown)."""
    source: str
    """``downloaded``, ``hf-cache`` (linked from the Hugging Face cache) or ``present``."""
    how: str
    """``moved``, ``hardlink``, ``symlink``, ``copy`` or ``unchanged``."""

    def to_json(self) -> dict[str, object]:
        """The result as JSON-ready data."""
        return asdict(self)


def pull(
    target: Target,
    models_dir: Path,
    *,
    force: bool = False,
    progress: bool = False,
    notify: Callable[[str], None] = lambda _: None,
) -> PullResult:
    """Install the GGUF named by ``target`` into ``models_dir``.

    Online, the Hub says which file and version to fetch; with ``HF_HUB_OFFLINE=1`` or
    when the Hub cannot be reached, the Hugging Face cache is the only source.

    Args:
        target: From :func:`gemma_chat.pull.catalog.resolve_spec`.
        models_dir: Where the model file goes.
        force: Replace a different file of the same name in ``models_dir``.
        progress: Show progress bars (on stderr).
        notify: Receives one-line notes for the user.

    Raises:
        GemmaChatError: One line saying what went wrong and what to do.
    """
    from huggingface_hub import is_offline_mode
    from huggingface_hub.utils import disable_progress_bars, logging

    # Its warnings ("Retrying in 2s", "Trying to resume download...") would break the
    # one-line error contract; pull says what matters itself.
    logging.set_verbosity_error()
    if not progress:
        disable_progress_bars()
    job = _Job(target, models_dir, force, progress, notify)
    try:
        if is_offline_mode():
            return job.from_cache(reason="HF_HUB_OFFLINE is set")
        return _online_or_cache(job)
    except GemmaChatError:
        raise
    except Exception as exc:
        error = _explain(exc, job.target)
        if job.downloading:
            error = GemmaChatError(f"{error}; run the same pull again to resume the download")
        raise error from None


def _online_or_cache(job: _Job) -> PullResult:
    from httpx2 import ProxyError, TransportError

    try:
        return job.online()
    except ProxyError as exc:
        raise GemmaChatError(f"the proxy refused the connection to the Hub: {_why(exc)}") from None
    except TransportError as exc:
        if job.downloading:
            raise GemmaChatError(
                f"the connection to the Hub broke during the download ({_why(exc)}); "
                "run the same pull again to resume the download"
            ) from None
        return job.from_cache(reason=f"the Hub at {_endpoint()} cannot be reached ({_why(exc)})")


class _Job:
    """One pull: the target, where it goes, and how the user hears about it."""

    def __init__(
        self,
        target: Target,
        models_dir: Path,
        force: bool,
        progress: bool,
        notify: Callable[[str], None],
    ) -> None:
        self.target = target
        self.models_dir = models_dir
        self.force = force
        self.progress = progress
        self.notify = notify
        self.downloading = False

    def online(self) -> PullResult:
        from huggingface_hub import (
            HfApi,
            constants,
            get_hf_file_metadata,
            hf_hub_url,
            try_to_load_from_cache,
        )

        repo = self.target.repo
        # One request that fails fast when the Hub is unreachable (list_repo_files would
        # retry for ~25 s), and that lists the files with their LFS sha256.
        info = HfApi(library_name=LIBRARY).model_info(
            repo,
            revision=self.target.revision,
            files_metadata=True,
            # huggingface_hub waits forever by default: a server that accepts the
            # connection and never answers (a stalled proxy) must not hang pull.
            timeout=constants.HF_HUB_ETAG_TIMEOUT,
        )
        files = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
        filename = self.target.filename
        if filename is None:
            filename = pick_file(list(files), self.target.quant or "", repo)
            self.target = replace(self.target, filename=filename)
        elif filename not in files:
            raise GemmaChatError(_missing_file(self.target, list(files)))
        # Pinned to the listed commit, so the file headers and bytes are that version.
        url = hf_hub_url(repo, filename, revision=info.sha or self.target.revision)
        meta = get_hf_file_metadata(url, library_name=LIBRARY)
        served = pull_files.expected_sha256(meta.etag)
        expected = files[filename] or served
        if served and expected != served:
            raise GemmaChatError(
                f"the Hub lists sha256 {expected[:12]}… for {filename} but its file headers "
                f"say {served[:12]}…; try again later"
            )
        final = self.final_path(filename)
        present = self.present(final, expected, meta.commit_hash)
        if present is not None:
            return present
        cached = try_to_load_from_cache(repo, filename, revision=meta.commit_hash)
        if isinstance(cached, str):
            return self.install(Path(cached), final, expected, meta.commit_hash, "hf-cache")
        self.downloading = True
        # Like hf_hub_download without hf_xet: a Xet-backed file is fetched through the
        # resolve URL (redirects followed); a plain LFS file straight from its CDN URL.
        source_url = url if meta.xet_file_data is not None else meta.location
        partial = pull_files.download(
            source_url,
            final,
            version=expected or meta.commit_hash or "unknown",
            size=meta.size,
            headers=_download_headers(url, source_url),
            notify=self.notify,
        )
        self.downloading = False
        return self.install(partial, final, expected, meta.commit_hash, "downloaded")

    def from_cache(self, reason: str) -> PullResult:
        """Install the file from the Hugging Face cache, or say why it cannot be had."""
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        cache = Path(constants.HF_HUB_CACHE)
        repo, filename = self.target.repo, self.target.filename
        # The ref is read here, bounded (a FIFO there cannot block), and the commit is
        # what huggingface_hub is given: with a commit it reads no ref itself.
        commit, files = pull_files.cached_files(cache, repo, self.target.revision)
        if not commit:
            raise GemmaChatError(_unavailable(reason, self.target, cache))
        if filename is None:
            if not files:
                raise GemmaChatError(_unavailable(reason, self.target, cache))
            filename = pick_file(files, self.target.quant or "", f"{repo} (cached)")
            self.target = replace(self.target, filename=filename)
        try:
            cached = hf_hub_download(repo, filename, revision=commit, local_files_only=True)
        except LocalEntryNotFoundError:
            raise GemmaChatError(_unavailable(reason, self.target, cache)) from None
        if not reason.startswith("HF_HUB_OFFLINE"):
            self.notify(f"{reason}; using the copy in the Hugging Face cache")
        blob = Path(cached).resolve()
        expected = pull_files.expected_sha256(blob.name)
        commit = _snapshot_commit(Path(cached))
        final = self.final_path(filename)
        present = self.present(final, expected, commit)
        if present is not None:
            return present
        return self.install(Path(cached), final, expected, commit, "hf-cache")

    def final_path(self, filename: str) -> Path:
        return self.models_dir / posixpath.basename(filename)

    def present(self, final: Path, expected: str | None, commit: str | None) -> PullResult | None:
        """The result when ``final`` already holds this file; None when it must be
        (re)installed.

        Raises:
            GemmaChatError: A different file of that name is there and ``force`` is off.
        """
        if not final.exists():
            return None
        label = final.name
        try:
            actual = pull_files.sha256_file(final, progress=self.progress, label=label)
        except OSError as exc:  # a FIFO or a folder of that name: never opened blocking
            raise GemmaChatError(f"{final} is in the way: {exc.strerror or exc}") from None
        if expected is not None and actual == expected:
            self.notify(f"{label} is already in {final.parent} and up to date")
            return self.result(final, actual, True, commit, "present", "unchanged")
        if self.force:
            return None
        if expected is None:
            raise GemmaChatError(
                f"{final} already exists and the Hub published no sha256 to compare it "
                "with; pass --force to replace it"
            )
        raise GemmaChatError(
            f"{final} already exists and is not this download (sha256 {actual[:12]}…); "
            "pass --force to replace it"
        )

    def install(
        self, source: Path, final: Path, expected: str | None, commit: str | None, origin: str
    ) -> PullResult:
        downloaded = origin == "downloaded"
        try:
            actual = pull_files.verify(source, expected, progress=self.progress, label=final.name)
        except pull_files.ChecksumMismatch as exc:
            source_note = self.discard(source, downloaded)
            raise GemmaChatError(f"{exc}; {source_note}") from None
        if expected is None:
            self.notify(f"the Hub published no sha256 for {final.name}: not verified")
        how = pull_files.install(source, final, move=downloaded)
        return self.result(final, actual, expected is not None, commit, origin, how)

    def discard(self, source: Path, downloaded: bool) -> str:
        """Delete a file that failed the check; say what to do next."""
        if downloaded:
            source.unlink(missing_ok=True)
            return "the download was deleted; run pull again"
        # A corrupt cache entry would be served again on every pull: drop the blob and
        # the snapshot link so that the next online pull downloads a fresh copy.
        blob = source.resolve()
        with contextlib.suppress(OSError):
            blob.unlink()
        with contextlib.suppress(OSError):
            source.unlink()
        return f"the corrupt copy in the Hugging Face cache ({blob}) was deleted"

    def result(
        self, final: Path, sha: str, verified: bool, commit: str | None, source: str, how: str
    ) -> PullResult:
        return PullResult(
            repo=self.target.repo,
            filename=self.target.filename or final.name,
            revision=commit,
            path=str(final),
            size=final.stat().st_size,
            sha256=sha,
            verified=verified,
            source=source,
            how=how,
        )


def _download_headers(url: str, location: str) -> dict[str, str]:
    from urllib.parse import urlparse

    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(library_name=LIBRARY)
    if urlparse(url).netloc != urlparse(location).netloc:
        # A signed CDN URL: the Hub token must not travel to another host.
        headers.pop("authorization", None)
    return headers


def _snapshot_commit(pointer: Path) -> str | None:
    """The commit of a cache path ``.../snapshots/<commit>/<file>``."""
    parts = pointer.parts
    if "snapshots" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("snapshots")
    return parts[index + 1] if index + 1 < len(parts) else None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unavailable(reason: str, target: Target, cache: Path) -> str:
    where = f"{target.label} is not in the Hugging Face cache ({cache})"
    if reason.startswith("HF_HUB_OFFLINE"):
        return (
            f"{reason} and {where}: unset HF_HUB_OFFLINE to download it, or pass "
            "--model PATH.gguf for a file you have"
        )
    return (
        f"{reason} and {where}: check the connection (or HF_ENDPOINT and the proxy "
        "settings), or download the file on another machine and pass --model PATH.gguf"
    )


def _explain(exc: Exception, target: Target) -> GemmaChatError:
    """One line for an error from huggingface_hub."""
    from huggingface_hub import errors

    if isinstance(exc, GemmaChatError):
        return exc
    repo = target.repo
    if isinstance(exc, errors.GatedRepoError):
        return GemmaChatError(
            f"{repo} is gated: accept its terms on https://huggingface.co/{repo}, then log "
            "in with `hf auth login` (or set HF_TOKEN)"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return GemmaChatError(
            f"repository {repo} was not found on the Hub (if it is private, log in with "
            "`hf auth login` or set HF_TOKEN)"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return GemmaChatError(f"{repo} has no revision {target.revision!r}")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return GemmaChatError(f"{target.repo} has no file {target.filename}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return GemmaChatError(_unavailable("HF_HUB_OFFLINE is set", target, Path("")))
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            return GemmaChatError(
                f"the Hub refused the token (401) for {repo}: log in again with "
                "`hf auth login` or fix HF_TOKEN"
            )
        if status == 429:
            return GemmaChatError("the Hub is rate-limiting requests (429); try again later")
        return GemmaChatError(f"the Hub answered with an error for {target.label}: {_why(exc)}")
    if isinstance(exc, errors.FileMetadataError):
        return GemmaChatError(
            f"{_endpoint()} did not answer like the Hugging Face Hub ({_why(exc)}); "
            "check HF_ENDPOINT and the proxy settings"
        )
    if isinstance(exc, OSError):
        return GemmaChatError(f"pull of {target.label} failed: {_why(exc)}")
    return GemmaChatError(f"pull of {target.label} failed: {type(exc).__name__}: {_why(exc)}")


def _missing_file(target: Target, files: list[str]) -> str:
    from gemma_chat.pull.catalog import gguf_files, quant_of

    message = f"{target.repo} has no file {target.filename}"
    quants = sorted({q for q in map(quant_of, gguf_files(files)) if q})
    return f"{message}; its quantizations: {', '.join(quants)}" if quants else message
