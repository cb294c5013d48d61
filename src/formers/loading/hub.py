"""Resolve a local folder or a Hugging Face hub id to files on disk.

A local directory always wins. Otherwise the file is fetched through huggingface_hub, which serves
it from the local HF cache when offline (HF_HUB_OFFLINE=1 or no network).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import HubFileNotFoundError


def is_local_folder(path_or_repo_id: str | os.PathLike) -> bool:
    return Path(path_or_repo_id).expanduser().is_dir()


def bundled_folder(path_or_repo_id: str | os.PathLike) -> Path | None:
    """The packaged folder of the model formers ships ("formers/default"), unless a local folder of that
    name exists (a local directory always wins); no network either way."""
    from ..default_model import CHECKPOINT_DIR, DEFAULT_MODEL_NAME

    if str(path_or_repo_id) == DEFAULT_MODEL_NAME and not is_local_folder(path_or_repo_id):
        return CHECKPOINT_DIR
    return None


def resolve_file(
    path_or_repo_id: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    required: bool = True,
) -> Path | None:
    """Return the local path of `filename` in a folder or hub repo.

    Returns None for a missing optional file (`required=False`); raises HubFileNotFoundError naming
    the repo and the file when a required one cannot be found locally, in the cache, or online.
    """
    path_or_repo_id = bundled_folder(path_or_repo_id) or path_or_repo_id
    if is_local_folder(path_or_repo_id):
        candidate = Path(path_or_repo_id).expanduser() / filename
        if candidate.is_file():
            return candidate
        if required:
            raise HubFileNotFoundError(f"{filename!r} not found in local folder {str(path_or_repo_id)!r}")
        return None
    return _resolve_from_hub(str(path_or_repo_id), filename, revision=revision, cache_dir=cache_dir,
                             local_files_only=local_files_only, token=token, required=required)


def _resolve_from_hub(repo_id, filename, *, revision, cache_dir, local_files_only, token, required):
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError, \
        RepositoryNotFoundError, RevisionNotFoundError

    try:
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None and not required:  # cache records that the file does not exist upstream
            return None
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, token=token))
    except HFValidationError as exc:
        raise HubFileNotFoundError(
            f"{repo_id!r} is neither a local folder nor a valid hub repo id (while looking for {filename!r})"
        ) from exc
    except (LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, OSError) as exc:
        if not required:
            return None
        raise HubFileNotFoundError(
            f"cannot find {filename!r} of repo {repo_id!r}"
            f"{' at revision ' + repr(revision) if revision else ''}: not in the local HF cache and "
            f"the hub is unreachable or the repo is unknown ({type(exc).__name__})"
        ) from exc
    except EntryNotFoundError:
        if not required:
            return None
        raise HubFileNotFoundError(f"repo {repo_id!r} has no file {filename!r}") from None
