"""What ``gemma-chat pull`` can name: built-in aliases, repositories and quantizations.

Pure functions, no network and no ``huggingface_hub`` import, so the naming rules are
cheap to test. :mod:`gemma_chat.pull.download` does the fetching.

An alias (``gemma2:9b``, ``gemma2:9b:Q6_K``) names a repository of GGUF files on the
Hugging Face Hub and a file-name pattern; the quantization picks the file. A spec with a
slash (``org/name``, ``org/name:Q6_K``) names any repository; the file is then given
explicitly or picked from the repository's listing by quantization.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from gemma_chat.errors import GemmaChatError, UsageError

DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class Alias:
    """A built-in short name for a repository of instruction-tuned Gemma GGUFs."""

    repo: str
    pattern: str
    """The file name, with ``{quant}`` where the quantization goes."""
    description: str


# Repositories checked on the Hub (see the README's `pull` section). bartowski's Gemma 2
# quantizations carry the soft-capping keys (re-made in July 2024); unsloth's Gemma 3
# repositories use the same `<model>-<QUANT>.gguf` naming.
ALIASES: dict[str, Alias] = {
    "gemma2:2b": Alias(
        "bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-{quant}.gguf", "Gemma 2 2B instruct"
    ),
    "gemma2:9b": Alias(
        "bartowski/gemma-2-9b-it-GGUF", "gemma-2-9b-it-{quant}.gguf", "Gemma 2 9B instruct"
    ),
    "gemma2:27b": Alias(
        "bartowski/gemma-2-27b-it-GGUF", "gemma-2-27b-it-{quant}.gguf", "Gemma 2 27B instruct"
    ),
    "gemma3:270m": Alias(
        "unsloth/gemma-3-270m-it-GGUF", "gemma-3-270m-it-{quant}.gguf", "Gemma 3 270M instruct"
    ),
    "gemma3:1b": Alias(
        "unsloth/gemma-3-1b-it-GGUF", "gemma-3-1b-it-{quant}.gguf", "Gemma 3 1B instruct"
    ),
}

# llama.cpp's quantization names: Q4_K_M, Q8_0, Q4_0_4_4, IQ4_XS, IQ2_XXS, Q3_K_XL, and
# unsloth's "dynamic" UD-Q4_K_XL; plus the unquantized F16/BF16/F32.
_QUANT = r"(?:UD-)?I?Q[1-8](?:_[0-9A-Z]{1,3})*|BF16|F16|F32"
_QUANT_RE = re.compile(rf"^(?:{_QUANT})$", re.IGNORECASE)
# A quantization inside a file name, delimited by '-' or '.': Q4_K does not match
# Q4_K_M, and Q4_K_XL does not match unsloth's UD-Q4_K_XL (a different recipe).
_IN_NAME_RE = re.compile(rf"(?:^|[-.])({_QUANT})(?=$|[-.])", re.IGNORECASE)
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_HUB_PREFIXES = ("https://huggingface.co/", "huggingface.co/", "hf.co/")


@dataclass(frozen=True)
class Target:
    """What to pull: a repository, and a file or a quantization to pick one with."""

    repo: str
    filename: str | None
    quant: str | None
    revision: str | None = None
    alias: str | None = None

    @property
    def label(self) -> str:
        """How messages name the target."""
        if self.filename:
            return f"{self.repo}/{self.filename}"
        return f"{self.repo} ({self.quant})"


def normalize_quant(quant: str) -> str:
    """The canonical (upper-case) spelling of a quantization name.

    Raises:
        UsageError: Not a llama.cpp quantization name.
    """
    if not _QUANT_RE.match(quant):
        raise UsageError(
            f"{quant!r} is not a GGUF quantization name (for example Q4_K_M, Q5_K_M, "
            "Q6_K, Q8_0 or IQ4_XS)"
        )
    return quant.upper()


def resolve_spec(
    spec: str, filename: str | None = None, quant: str | None = None, revision: str | None = None
) -> Target:
    """Turn ``pull``'s arguments into a :class:`Target`.

    Args:
        spec: An alias (``gemma2:9b``, ``gemma2:9b:Q6_K``) or a repository
            (``org/name``, ``org/name:Q6_K``; an ``hf.co/`` prefix is allowed).
        filename: The file to take from a repository.
        quant: ``--quant``; the default is Q4_K_M when no file is given.
        revision: A branch, tag or commit (the default branch when None).

    Raises:
        UsageError: An unknown alias, a bad quantization, or conflicting arguments.
    """
    spec = spec.strip()
    for prefix in _HUB_PREFIXES:
        if spec.startswith(prefix):
            spec = spec[len(prefix) :]
    if "/" in spec:
        name, _, inline = spec.partition(":")
    else:
        name, inline = _split_alias(spec)
    if inline:
        if quant and normalize_quant(quant) != normalize_quant(inline):
            raise UsageError(f"{spec} names {inline}, but --quant says {quant}: give one")
        quant = inline
    if filename and quant:
        raise UsageError("give FILE or a quantization, not both")
    if "/" not in name:
        return _alias_target(name, filename, quant, revision)
    if not _REPO_RE.match(name) or ".." in name or "--" in name:
        raise UsageError(f"{name!r} is not a Hugging Face repository id (org/name)")
    if filename is not None:
        _check_filename(filename)
        return Target(name, filename, None, revision)
    return Target(name, None, normalize_quant(quant or DEFAULT_QUANT), revision)


def _split_alias(spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if len(parts) == 3:
        return f"{parts[0]}:{parts[1]}", parts[2]
    return spec, ""


def _alias_target(
    name: str, filename: str | None, quant: str | None, revision: str | None
) -> Target:
    alias = ALIASES.get(name.lower())
    if alias is None:
        raise UsageError(
            f"unknown model {name!r}: use a built-in alias ({', '.join(ALIASES)}) "
            "or a Hugging Face repository (org/name)"
        )
    if filename is not None:
        raise UsageError(f"{name} picks its file by quantization: use --quant, not FILE")
    chosen = normalize_quant(quant or DEFAULT_QUANT)
    if not chosen.startswith(("Q", "IQ")):
        # Unquantized files are split over several files or spelled differently per
        # repository; name the repository and the file instead.
        raise UsageError(
            f"{name} offers quantized files (Q*/IQ*); for {chosen} pass the repository "
            f"{alias.repo} and the FILE"
        )
    return Target(alias.repo, alias.pattern.format(quant=chosen), chosen, revision, name.lower())


def _check_filename(filename: str) -> None:
    parts = filename.split("/")
    if filename.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UsageError(f"{filename!r} is not a file path inside a repository")
    if not filename.lower().endswith(".gguf"):
        raise UsageError(f"{filename!r} is not a GGUF file (.gguf)")


def quant_of(filename: str) -> str | None:
    """The quantization named in a GGUF file name (the last one), or None."""
    stem = posixpath.basename(filename)
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    found = _IN_NAME_RE.findall(stem)
    return found[-1].upper() if found else None


def gguf_files(files: list[str]) -> list[str]:
    """The model GGUFs in a repository listing (vision projectors left out)."""
    return sorted(
        path
        for path in files
        if path.lower().endswith(".gguf")
        and not posixpath.basename(path).lower().startswith("mmproj")
    )


def pick_file(files: list[str], quant: str, repo: str) -> str:
    """The one GGUF in ``files`` whose name carries the quantization ``quant``.

    Raises:
        GemmaChatError: No file, or several files, match (the message lists the
            candidates).
    """
    models = gguf_files(files)
    wanted = quant.upper()
    matches = [path for path in models if wanted in _quants_in(path)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise GemmaChatError(
            f"{quant} matches {len(matches)} files in {repo}: {', '.join(matches)}; "
            "pass the one you want as FILE"
        )
    if not models:
        raise GemmaChatError(f"{repo} has no GGUF files")
    available = sorted({q for q in map(quant_of, models) if q})
    raise GemmaChatError(f"{repo} has no {quant} GGUF; it has: {', '.join(available or models)}")


def _quants_in(path: str) -> set[str]:
    stem = posixpath.basename(path)[: -len(".gguf")]
    return {match.upper() for match in _IN_NAME_RE.findall(stem)}
