"""Hugging Face hub uploads and downloads, with clear errors when the hub is out of reach.

Everything that talks to the hub goes through here (``huggingface_hub`` is imported only
when a function runs). ``HF_HUB_OFFLINE=1`` is honoured before any request: uploads refuse
at once, downloads use the local hub cache only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from m2v_search.errors import HubUnavailableError
from m2v_search.persistence import hub_offline


class SavableModel(Protocol):
    """What ``push_model_to_hub`` needs of a model (``StaticModel`` has it)."""

    def save_pretrained(self, path: str | os.PathLike[str], model_name: str | None = None) -> None: ...


def push_model_to_hub(
    model: SavableModel,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    subfolder: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """Save ``model`` (Model2Vec layout, model card included) and upload it to a model repository.

    Args:
        model: the model to upload.
        repo_id: ``owner/name``; created when missing.
        private: create the repository private (an existing one keeps its visibility).
        token: Hugging Face token (default: the stored login).
        subfolder: folder inside the repository (default: its root).
        commit_message: the commit's title (default: "Upload <name> with m2v-search").
        revision: the branch to commit to (default: the main branch).

    Returns:
        The URL of the commit.

    Raises:
        HubUnavailableError: HF_HUB_OFFLINE is set or the hub cannot be reached.
    """
    require_online(f"push the model to {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="m2v-push-") as temporary:
        folder = Path(temporary) / "model"
        model.save_pretrained(folder, model_name=repo_id)
        return upload_folder(folder, repo_id, repo_type="model", private=private, token=token,
                             path_in_repo=subfolder,
                             commit_message=commit_message or f"Upload {repo_id.split('/')[-1]} with m2v-search",
                             revision=revision)


def require_online(action: str) -> None:
    """Raise HubUnavailableError naming ``action`` when HF_HUB_OFFLINE is set."""
    if hub_offline():
        raise HubUnavailableError(f"cannot {action}: HF_HUB_OFFLINE is set (unset it to use the Hugging Face hub)")


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    token: str | None,
    path_in_repo: str | None,
    commit_message: str,
    revision: str | None,
) -> str:
    """Create the repository if needed, then commit every file of ``folder``; the commit URL.

    Raises:
        HubUnavailableError: the hub cannot be reached (network errors, offline mode).
        huggingface_hub.errors.HfHubHTTPError: the hub answered with an error (e.g. a bad token).
    """
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, path_in_repo=path_in_repo,
                                   repo_type=repo_type, commit_message=commit_message, revision=revision)
    except HfHubHTTPError:
        raise
    except Exception as error:
        raise HubUnavailableError(f"cannot upload {folder.name} to the {repo_type} repository {repo_id!r}: the "
                                  f"Hugging Face hub is unreachable ({describe(error)})") from error
    return str(getattr(commit, "commit_url", commit))


def describe(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line error messages."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def cache_kwargs(token: str | None, cache_dir: str | os.PathLike[str] | None,
                 local_dir: str | os.PathLike[str] | None, force_download: bool) -> dict[str, Any]:
    """The keyword arguments every download call shares (offline mode: the cache only)."""
    return {"token": token, "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
            "local_dir": None if local_dir is None else os.fspath(local_dir),
            "force_download": force_download and not hub_offline(), "local_files_only": hub_offline()}
