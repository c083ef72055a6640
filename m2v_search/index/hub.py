"""An index directory as a Hugging Face hub dataset repository: push and download.

The repository holds ``manifest.json``, the files it lists (checked against their sha256
before the upload and again after every download), a generated ``README.md``, and, when
asked, the index's model folder under ``model/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from m2v_search.errors import HubUnavailableError
from m2v_search.hub import cache_kwargs, describe, require_online, upload_folder
from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError
from m2v_search.index.manifest import MANIFEST_NAME, read_manifest, verify_files
from m2v_search.index.manifest_schema import is_plain_name

MODEL_FOLDER = "model"
REPO_TYPE = "dataset"


def push_index_to_hub(
    index_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    include_model: bool = False,
) -> str:
    """Upload a saved index directory to a dataset repository (created when missing).

    A consistent snapshot is taken first (the manifest and the files it lists, hard-linked or
    copied, then verified), so a writer saving meanwhile does not mix two generations.

    Args:
        index_dir: a saved index directory (holding ``manifest.json``).
        repo_id: ``owner/name`` of the dataset repository.
        private: create the repository private (an existing one keeps its visibility).
        token: Hugging Face token (default: the stored login).
        commit_message: the commit's title.
        revision: the branch to commit to (default: the main branch).
        include_model: also upload the model folder the manifest names (under ``model/``),
            so that ``index_from_hub`` users need nothing else. Bundled models are never uploaded.

    Returns:
        The URL of the commit.

    Raises:
        IndexNotFoundError: ``index_dir`` is not an index.
        IndexCorruptError: a file does not match its checksum (nothing is uploaded).
        HubUnavailableError: HF_HUB_OFFLINE is set or the hub cannot be reached.
    """
    directory = Path(index_dir)
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    require_online(f"push the index {directory} to {repo_id!r}")
    directory.resolve().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.push-", dir=directory.resolve().parent))
    try:
        manifest = _snapshot(directory, staging)
        (staging / "README.md").write_text(dataset_card(repo_id, manifest), encoding="utf-8")
        if include_model:
            _add_model_folder(manifest, staging)
        return upload_folder(staging, repo_id, repo_type=REPO_TYPE, private=private, token=token, path_in_repo=None,
                             commit_message=commit_message or "Upload m2v-search index", revision=revision)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def index_from_hub(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
) -> Path:
    """Download an index pushed with ``push_index_to_hub`` and verify every file's sha256.

    With HF_HUB_OFFLINE set, only the local hub cache is used (no request is made).

    Args:
        repo_id: ``owner/name`` of the dataset repository.
        revision: branch, tag or commit (default: the main branch).
        token: Hugging Face token, for private repositories.
        cache_dir: the hub cache to use (default: huggingface_hub's).
        local_dir: download into this folder instead of the cache (use it for an index you
            will modify: cached files are shared, read-only snapshots).
        force_download: download again even when cached.

    Returns:
        The local index directory (pass it to ``VectorIndex.open``; its model, if uploaded,
        is in ``model_folder(directory)``).

    Raises:
        HubUnavailableError: offline without a cached copy, or the hub cannot be reached.
        IndexNotFoundError: the repository, revision or its manifest does not exist.
        IndexCorruptError: a downloaded file does not match the manifest.
    """
    import huggingface_hub

    options = cache_kwargs(token, cache_dir, local_dir, force_download)
    pinned = revision if options["local_files_only"] else _commit_of(repo_id, revision, token)
    try:
        manifest_file = huggingface_hub.hf_hub_download(repo_id, MANIFEST_NAME, repo_type=REPO_TYPE,
                                                        revision=pinned, **options)
        listed = _listed_files(Path(manifest_file))
        folder = huggingface_hub.snapshot_download(
            repo_id, repo_type=REPO_TYPE, revision=pinned,
            allow_patterns=[MANIFEST_NAME, "README.md", f"{MODEL_FOLDER}/*", *listed], **options)
    except (IndexNotFoundError, IndexCorruptError):
        raise
    except Exception as error:
        raise _download_error(repo_id, revision, error, options["local_files_only"]) from error
    directory = _plain_files(Path(folder), [MANIFEST_NAME, *listed])
    manifest = read_manifest(directory)  # the full checks, on the plain copy
    try:
        verify_files(directory, manifest)
    except IndexCorruptError as error:
        raise IndexCorruptError(f"{error}; download it again with force_download=True") from None
    return directory


def _listed_files(manifest_file: Path) -> list[str]:
    """The file names a downloaded manifest lists (only to choose what to download: the manifest
    itself is checked in full once the files are local)."""
    try:
        files = json.loads(manifest_file.read_bytes()).get("files")
    except (ValueError, AttributeError) as error:
        raise IndexCorruptError(f"{manifest_file}: not a readable index manifest ({error})") from None
    if not isinstance(files, dict) or not all(isinstance(name, str) for name in files):
        raise IndexCorruptError(f"{manifest_file}: 'files' must map file names to their checksums")
    for name in files:  # the names become download patterns: '*' or a path would fetch other files
        if not is_plain_name(name) or any(char in name for char in "*?["):
            raise IndexCorruptError(f"{manifest_file}: 'files' names an unsafe file {name!r} (not a plain "
                                    "name inside the directory)")
    return list(files)


def _plain_files(snapshot: Path, names: list[str]) -> Path:
    """``snapshot`` itself when it holds plain files (``local_dir`` downloads), else a copy of it.

    The hub cache keeps each file of a snapshot as a symbolic link into its blob store, and an
    index opens only plain files (a link could be swapped between the check and the read), so
    a cached snapshot is copied once, atomically, beside it: ``<repo cache>/m2v-search/<commit>``.
    """
    if not any((snapshot / name).is_symlink() for name in names):
        return snapshot
    target = snapshot.parent.parent / "m2v-search" / snapshot.name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{snapshot.name}.", dir=target.parent))
    try:
        for source in snapshot.rglob("*"):
            if source.is_file():  # follows the cache's links to their blobs
                destination = staging / source.relative_to(snapshot)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # another process may have finished the same copy first
            raise
    return target


def model_folder(directory: str | os.PathLike[str]) -> Path | None:
    """The model folder uploaded with an index (``include_model=True``), or None."""
    folder = Path(directory) / MODEL_FOLDER
    return folder if (folder / "model.safetensors").exists() else None


def dataset_card(repo_id: str, manifest: dict[str, Any]) -> str:
    """The README.md of an index repository: YAML front matter, then what the index holds."""
    model = manifest.get("model", {})
    counts = manifest.get("counts", {})
    index = manifest.get("index", {})
    model_name = "vectors computed elsewhere" if model.get("external") else model.get("name", "unknown")
    return "\n".join([
        "---", "tags: [m2v-search, vector-index, faiss, embeddings]", "---",
        f"# {repo_id.split('/')[-1]}", "",
        "An m2v-search vector index (FAISS + SQLite document store), pushed with `push_index_to_hub`.", "",
        f"- documents: {counts.get('documents', 'unknown')}",
        f"- dimensions: {manifest.get('dim')}, metric: {manifest.get('metric', 'inner_product')}",
        f"- index: {index.get('kind', 'unknown')} (`{index.get('factory', '')}`)",
        f"- model: {model_name}",
        "", "```python", "from m2v_search.index.hub import index_from_hub", "",
        f"directory = index_from_hub({repo_id!r})  # every file is checked against manifest.json", "```", "",
    ])


def _snapshot(directory: Path, staging: Path) -> dict[str, Any]:
    """Hard-link (or copy) the manifest and its files into ``staging``; verify; the manifest."""
    shutil.copy2(directory / MANIFEST_NAME, staging / MANIFEST_NAME)
    manifest = read_manifest(staging)
    for name in manifest["files"]:
        try:
            try:
                os.link(directory / name, staging / name)
            except OSError:
                shutil.copy2(directory / name, staging / name)
        except FileNotFoundError:
            raise IndexCorruptError(f"{directory / name} disappeared while the index was being pushed "
                                    "(a writer saved meanwhile); push again") from None
    verify_files(staging, manifest)
    return manifest


def _add_model_folder(manifest: dict[str, Any], staging: Path) -> None:
    from m2v_search.persistence import bundled_model_names

    recorded = manifest.get("model", {})
    path = recorded.get("path")
    if recorded.get("external") or not path or path in bundled_model_names():
        return
    source = Path(path)
    if not (source / "model.safetensors").exists():
        raise IndexNotFoundError(f"include_model=True, but the index's model folder {source} is missing")
    shutil.copytree(source, staging / MODEL_FOLDER, ignore=shutil.ignore_patterns(".*"))


def _commit_of(repo_id: str, revision: str | None, token: str | None) -> str:
    """The commit ``revision`` points to now, so the manifest and the files come from one commit."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return str(huggingface_hub.HfApi(token=token).dataset_info(repo_id, revision=revision).sha)
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise IndexNotFoundError(f"dataset repository {repo_id!r} (revision {revision or 'main'}) does not exist "
                                 f"or is private ({describe(error)})") from error
    except Exception as error:
        raise _download_error(repo_id, revision, error, offline=False) from error


def _download_error(repo_id: str, revision: str | None, error: Exception, offline: bool) -> Exception:
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    if isinstance(error, EntryNotFoundError) and not isinstance(error, LocalEntryNotFoundError):
        return IndexNotFoundError(f"dataset repository {repo_id!r} has no {MANIFEST_NAME}: not an m2v-search index")
    where = f"{repo_id!r}" + (f" (revision {revision})" if revision else "")
    if offline:
        return HubUnavailableError(f"the index {where} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                   f"is set; download it once online, or open a local index directory instead")
    return HubUnavailableError(f"cannot download the index {where} from the Hugging Face hub ({describe(error)})")
