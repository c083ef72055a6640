"""Teacher sentence embeddings of a corpus, written in resumable shards.

``featurize`` runs a Sentence Transformer folder (a transformers model with mean pooling)
over the texts and writes ``shard_00000.npy``, ``shard_00001.npy``, ... plus a
``progress.json`` that lists the finished shards. Each shard and the progress file are
written atomically, so an interrupted run resumes at the first unfinished shard; a run
over other texts or another teacher refuses to mix with the old shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROGRESS_FILE = "progress.json"
FORMAT_VERSION = 1


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts (order matters): ties shards to the corpus they came from."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def teacher_fingerprint(folder: str | os.PathLike[str]) -> str:
    """sha256 over a teacher folder's config files and the names and sizes of its weight files:
    ties shards to the teacher that wrote them, wherever the folder now lives (cheap: no weights read)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and path.suffix == ".json":
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
        elif path.is_file() and path.suffix in (".safetensors", ".bin"):
            digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()


def resolve_device(device: str = "auto") -> str:
    """"auto" -> cuda, then mps, then cpu; anything else is returned as given."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Teacher:
    """A Sentence Transformer folder run through transformers: mean pooling (+ L2 norm if it has Normalize)."""

    def __init__(self, folder: str | os.PathLike[str], device: str = "auto", dtype: str = "auto",
                 max_length: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        if not (self.folder / "config.json").exists():
            raise FileNotFoundError(f"teacher folder {self.folder} has no config.json")
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.folder), local_files_only=True).to(self.device).eval()
        if dtype == "auto":
            dtype = "float16" if self.device == "cuda" else "float32"
        self.dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        self.normalize, self.max_length = _sentence_transformer_settings(self.folder)
        if max_length is not None:
            self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled (and, like the Sentence Transformer, normalised) float32 embeddings of ``texts``."""
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self.dtype,
                                                     enabled=self.dtype != torch.float32):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embeddings of any number of texts, batched by length (order preserved)."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        output = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start:start + batch_size]
            output[chosen] = self.embed([texts[i] for i in chosen])
        return output


def _sentence_transformer_settings(folder: Path) -> tuple[bool, int | None]:
    normalize = False
    modules = folder / "modules.json"
    if modules.exists():
        normalize = any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))
    max_length = None
    settings = folder / "sentence_bert_config.json"
    if settings.exists():
        max_length = json.loads(settings.read_text()).get("max_seq_length")
    return normalize, max_length


def _atomic_write_bytes(path: Path, write: Any) -> None:
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=path.name, suffix=".partial",
                                     delete=False) as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def _read_progress(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / PROGRESS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete the folder to start over") from None


def featurize(
    texts: Sequence[str],
    teacher: str | os.PathLike[str] | Teacher,
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 256,
    shard_size: int = 50_000,
    show_progress_bar: bool = True,
) -> Path:
    """Embed ``texts`` with ``teacher`` into shards under ``out_dir`` (resuming finished shards).

    Returns ``out_dir``. Use ``load_features`` to read the result.

    Raises:
        RuntimeError: another process is featurizing into ``out_dir`` now.
        ValueError: ``out_dir`` holds features of other texts, settings or another teacher.
    """
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _featurize_locked(texts, teacher, out, device=device, dtype=dtype, batch_size=batch_size,
                                 shard_size=shard_size, show_progress_bar=show_progress_bar)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file, so that a second featurizer of the same folder stops at once instead
    of computing the same shards beside the first (released by the OS even on kill -9)."""
    from m2v_search.index.errors import IndexLockedError
    from m2v_search.index.locking import WriterLock

    lock = WriterLock.for_directory(out)
    try:
        lock.acquire()
    except IndexLockedError as error:
        raise RuntimeError(f"the feature folder {error}") from None
    try:
        yield
    finally:
        lock.release()


def _featurize_locked(texts: Sequence[str], teacher: str | os.PathLike[str] | Teacher, out: Path, *, device: str,
                      dtype: str, batch_size: int, shard_size: int, show_progress_bar: bool) -> Path:
    from tqdm.auto import tqdm

    fingerprint = texts_fingerprint(texts)
    teacher_name = str(teacher.folder if isinstance(teacher, Teacher) else teacher)
    teacher_sha256 = teacher_fingerprint(teacher_name)
    progress = _read_progress(out)
    if progress is not None:
        checks = [("texts_sha256", fingerprint), ("shard_size", shard_size), ("n_texts", len(texts))]
        if "teacher_sha256" in progress:  # folders written before it was recorded resume as before
            checks.append(("teacher_sha256", teacher_sha256))
        for key, value in checks:
            if progress.get(key) != value:
                what = f"another teacher ({progress.get('teacher')})" if key == "teacher_sha256" else \
                    f"other texts or settings ({key}: {progress.get(key)!r} != {value!r})"
                raise ValueError(f"{out / PROGRESS_FILE} was written for {what}; use another folder or delete it")
    else:
        progress = {"format_version": FORMAT_VERSION, "teacher": teacher_name, "teacher_sha256": teacher_sha256,
                    "n_texts": len(texts), "shard_size": shard_size, "texts_sha256": fingerprint, "done": [],
                    "seconds": 0.0}
    n_shards = (len(texts) + shard_size - 1) // shard_size
    done = set(progress["done"])
    todo = [i for i in range(n_shards) if i not in done]
    bar = tqdm(total=len(texts), initial=len(texts) - sum(min(shard_size, len(texts) - i * shard_size) for i in todo),
               unit="texts", desc="Featurizing", disable=not show_progress_bar, smoothing=0.1)
    if todo and not isinstance(teacher, Teacher):
        teacher = Teacher(teacher, device=device, dtype=dtype)
    for shard in todo:
        started = time.perf_counter()
        shard_texts = texts[shard * shard_size:(shard + 1) * shard_size]
        order = np.argsort([len(t) for t in shard_texts], kind="stable")
        vectors = np.empty((len(shard_texts), teacher.dim), dtype=np.float32)  # type: ignore[union-attr]
        for start in range(0, len(shard_texts), batch_size):
            chosen = order[start:start + batch_size]
            vectors[chosen] = teacher.embed([shard_texts[i] for i in chosen])  # type: ignore[union-attr]
            bar.update(len(chosen))
        _atomic_write_bytes(out / f"shard_{shard:05d}.npy", lambda handle: np.save(handle, vectors))
        progress["done"] = sorted(set(progress["done"]) | {shard})
        progress.setdefault("dtypes", {})[str(shard)] = _dtype_name(teacher)  # type: ignore[arg-type]
        progress["dim"] = int(vectors.shape[1])
        progress["seconds"] = round(progress["seconds"] + time.perf_counter() - started, 3)
        _atomic_write_bytes(out / PROGRESS_FILE,
                            lambda handle: handle.write(json.dumps(progress, indent=1).encode("utf-8")))
    bar.close()
    return out


def _dtype_name(teacher: Teacher) -> str:
    return str(teacher.dtype).removeprefix("torch.")


def load_features(out_dir: str | os.PathLike[str]) -> np.ndarray:
    """All shards of a finished ``featurize`` run, concatenated (float32, one row per text)."""
    out = Path(out_dir)
    progress = _read_progress(out)
    if progress is None:
        raise FileNotFoundError(f"{out} holds no {PROGRESS_FILE}: run featurize first")
    n_shards = (progress["n_texts"] + progress["shard_size"] - 1) // progress["shard_size"]
    missing = sorted(set(range(n_shards)) - set(progress["done"]))
    if missing:
        raise ValueError(f"{out}: featurization unfinished, shards {missing[:5]} missing; run featurize again")
    arrays = [np.load(out / f"shard_{i:05d}.npy", allow_pickle=False) for i in range(n_shards)]
    features = np.concatenate(arrays) if arrays else np.zeros((0, progress.get("dim", 0)), np.float32)
    if len(features) != progress["n_texts"]:
        raise ValueError(f"{out}: {len(features)} rows in the shards, {progress['n_texts']} texts expected")
    return features
