"""Where models come from: a local path, or a Hugging Face repository downloaded once into `models_dir`.

A download happens the first time a repository is asked for (with huggingface_hub's progress bars); afterwards the
cached copy is used without touching the network, so paperbot starts offline once it has run online. When neither
works the caller gets `ModelUnavailable`, whose message says which setting to change or what to run.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rag_engine.errors import ModelUnavailable

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _local(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    return path if path.exists() else None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") != 1


def _hub_cache(models_dir: Path) -> Path:
    return Path(models_dir) / "hub"


def _unavailable(what: str, spec: str, env_var: str, reason: str, fetch: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"The {what} `{spec}` is not on this machine and could not be downloaded ({reason}). "
        f"Either set {env_var} to a local copy, or run paperbot once with network access so it can fetch it, "
        f"or fetch it yourself with `{fetch}` and point {env_var} at the result."
    )


def _download_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: offline, unreachable, no such repo/file, gated, disk (names vary by version)."""
    from huggingface_hub import errors

    names = ("HfHubHTTPError", "LocalEntryNotFoundError", "EntryNotFoundError", "IncompleteSnapshotError")
    return tuple(getattr(errors, n) for n in names if hasattr(errors, n)) + (OSError, ValueError)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _snapshot(repo_id: str, models_dir: Path, allow_patterns: list[str] | None, required: str | None = None) -> Path:
    """The repo's files in the local cache: reused without network when complete, else downloaded (resumably)."""
    from huggingface_hub import snapshot_download

    cache = _hub_cache(models_dir)
    try:  # what an earlier run downloaded, without asking the network
        folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=allow_patterns, local_files_only=True))
        if required is None or (folder / required).is_file():
            return folder
    except _download_errors():
        pass
    log.info("downloading %s (%s) into %s, once", repo_id, ", ".join(allow_patterns or ["all files"]), cache)
    folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=allow_patterns))
    log.info("%s is in %s", repo_id, folder)
    return folder


def resolve_model_dir(
    spec: str,
    models_dir: Path,
    *,
    allow_patterns: list[str] | None = None,
    env_var: str = "PAPERBOT_COLBERT_MODEL",
) -> Path:
    """A model folder: `spec` itself if it is a folder on disk, else the Hugging Face repo `spec` (downloaded once).

    `allow_patterns` limits which files of the repository are fetched (e.g. no TensorFlow weights).
    """
    local = _local(spec)
    if local is not None:
        if not local.is_dir():
            raise ModelUnavailable(f"{env_var}={spec} is a file; it must be a model folder.")
        return local
    if _looks_like_path(spec) or not _REPO_ID.match(spec):
        raise ModelUnavailable(f"{env_var}={spec}: there is no such folder, and it is not a Hugging Face model id.")
    try:
        return _snapshot(spec, models_dir, allow_patterns)
    except _download_errors() as error:
        fetch = f"hf download {spec} --local-dir {Path(models_dir) / spec}"
        raise _unavailable("model", spec, env_var, _short(error), fetch) from error


def resolve_model_file(spec: str, models_dir: Path, *, env_var: str = "PAPERBOT_LLM_MODEL") -> Path:
    """A model file: `spec` itself if it is a file on disk, else `owner/repo:file.gguf` from Hugging Face (once)."""
    local = _local(spec)
    if local is not None:
        if not local.is_file():
            raise ModelUnavailable(f"{env_var}={spec} is a folder; it must be a .gguf file.")
        return local
    repo_id, sep, filename = spec.partition(":")
    if not sep or not filename or not _REPO_ID.match(repo_id) or _looks_like_path(repo_id):
        raise ModelUnavailable(
            f"{env_var}={spec}: there is no such file, and it is not of the form `owner/repo:file.gguf`."
        )
    fetch = f"hf download {repo_id} {filename} --local-dir {Path(models_dir)}"
    try:
        path = _snapshot(repo_id, models_dir, [filename], required=filename) / filename
    except _download_errors() as error:
        raise _unavailable("model file", spec, env_var, _short(error), fetch) from error
    if not path.is_file():
        raise _unavailable("model file", spec, env_var, f"the repository has no file {filename}", fetch)
    return path
