"""M2VEmbeddings: LangChain's standard unit tests, and its own behaviour."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError

from langchain_m2v import M2VEmbeddings


class TestM2VEmbeddingsStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[M2VEmbeddings]:
        return M2VEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": os.environ.get("LANGCHAIN_M2V_TEST_MODEL", "m2v-base")}


def test_defaults_and_alias(m2v_embeddings, test_model_name):
    from m2v_search.model import StaticModel

    assert M2VEmbeddings.model_fields["model_name"].default == "m2v-base"
    by_alias = M2VEmbeddings(model=test_model_name, batch_size=7)
    by_name = M2VEmbeddings(model_name=test_model_name)
    assert by_alias.model_name == by_name.model_name == test_model_name
    assert by_alias.batch_size == 7 and by_name.batch_size == 1024
    assert isinstance(by_alias.client, StaticModel) and by_alias.dim == by_alias.client.dim


def test_model_given_positionally_like_model2vec_embeddings(test_model_name):
    """``M2VEmbeddings("path-or-name")``, as langchain-community's ``Model2vecEmbeddings(model)``."""
    positional = M2VEmbeddings(test_model_name)
    assert positional.model_name == test_model_name
    np.testing.assert_allclose(positional.embed_query("a violin"),
                               M2VEmbeddings(model=test_model_name).embed_query("a violin"), atol=1e-7)
    with pytest.raises(TypeError, match="twice"):
        M2VEmbeddings(test_model_name, model=test_model_name)


def test_vectors_are_unit_length_by_default(m2v_embeddings, corpus):
    assert M2VEmbeddings.model_fields["normalize"].default is True
    vectors = np.array(m2v_embeddings.embed_documents(corpus.texts))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif("not __import__('m2v_search.persistence').persistence.bundled_model_names()",
                    reason="the bundled m2v-base model is not built")
def test_no_argument_loads_the_bundled_default():
    embeddings = M2VEmbeddings()
    assert embeddings.model_name == "m2v-base"
    assert embeddings.client.name == "m2v-base"


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"max_length": 0}, {"unknown_option": 1}])
def test_invalid_parameters_are_refused(bad, test_model_name):
    with pytest.raises(ValidationError):
        M2VEmbeddings(model=test_model_name, **bad)


def test_model_is_loaded_once(monkeypatch, test_model_name):
    from m2v_search.model import StaticModel

    calls = []
    original = StaticModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(StaticModel, "from_pretrained", classmethod(counting))
    embeddings = M2VEmbeddings(model=test_model_name)
    embeddings.embed_documents(["one", "two"])
    embeddings.embed_query("three")
    embeddings.embed_documents(["four"])
    assert len(calls) == 1


def test_vectors_are_python_floats_matching_the_model(m2v_embeddings, corpus):
    documents = m2v_embeddings.embed_documents(corpus.texts)
    assert len(documents) == len(corpus.texts)
    assert all(type(value) is float for row in documents for value in row)
    expected = m2v_embeddings.client.encode(corpus.texts)
    np.testing.assert_allclose(np.array(documents), expected, rtol=1e-6, atol=1e-6)
    query = m2v_embeddings.embed_query(corpus.texts[3])
    assert all(type(value) is float for value in query)
    np.testing.assert_allclose(query, expected[3], rtol=1e-6, atol=1e-6)


def test_empty_input_gives_empty_list(m2v_embeddings):
    assert m2v_embeddings.embed_documents([]) == []


def test_batching_is_internal_and_does_not_change_vectors(m2v_embeddings, corpus, monkeypatch):
    small = M2VEmbeddings.from_model(m2v_embeddings.client, batch_size=5)
    seen = []
    original = small.client.iter_encode

    def spy(texts, **kwargs):
        seen.append(kwargs.get("batch_size"))
        return original(texts, **kwargs)

    monkeypatch.setattr(small.client, "iter_encode", spy)
    np.testing.assert_allclose(small.embed_documents(corpus.texts), m2v_embeddings.embed_documents(corpus.texts),
                               rtol=1e-6, atol=1e-6)
    assert 5 in seen


def test_normalize_option(m2v_embeddings, corpus):
    raw = np.array(M2VEmbeddings.from_model(m2v_embeddings.client, normalize=False).embed_documents(corpus.texts))
    unit = np.array(M2VEmbeddings.from_model(m2v_embeddings.client, normalize=True).embed_documents(corpus.texts))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_max_length_truncates(test_model_name):
    short = M2VEmbeddings(model=test_model_name, max_length=1)
    full = M2VEmbeddings(model=test_model_name)
    assert short.embed_query("river bread violin") == pytest.approx(full.embed_query("river"), abs=1e-6)
    assert full.embed_query("river bread violin") != pytest.approx(full.embed_query("river"), abs=1e-3)


def test_bad_text_is_named(m2v_embeddings):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        m2v_embeddings.embed_documents(["fine", 3])
    with pytest.raises(TypeError, match="text is"):
        m2v_embeddings.embed_query(None)


def test_from_model_checks_its_arguments(m2v_embeddings):
    with pytest.raises(TypeError):
        M2VEmbeddings.from_model("m2v-base")
    with pytest.raises(ValueError, match="max_length"):
        M2VEmbeddings.from_model(m2v_embeddings.client, max_length=3)
    with pytest.raises(ValidationError):
        M2VEmbeddings.from_model(m2v_embeddings.client, batch_size=-1)


async def test_async_matches_sync(m2v_embeddings, corpus):
    assert await m2v_embeddings.aembed_documents(corpus.texts) == m2v_embeddings.embed_documents(corpus.texts)
    assert await m2v_embeddings.aembed_query("violin") == m2v_embeddings.embed_query("violin")
    assert await m2v_embeddings.aembed_documents([]) == []


async def test_async_does_not_block_the_event_loop(m2v_embeddings, monkeypatch):
    embeddings = M2VEmbeddings.from_model(m2v_embeddings.client)
    original = embeddings.client.encode

    def slow_encode(*args, **kwargs):
        time.sleep(0.3)  # stands in for a large batch; blocks whichever thread runs it
        return original(*args, **kwargs)

    monkeypatch.setattr(embeddings.client, "encode", slow_encode)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        vectors = await embeddings.aembed_documents(["a violin", "a marathon"])
        query = await embeddings.aembed_query("a violin")
    finally:
        task.cancel()
    assert len(vectors) == 2 and query == pytest.approx(vectors[0], abs=1e-6)
    assert ticks >= 20  # the loop kept running during ~0.6 s of blocking work


def test_import_is_light():
    code = ("import sys, langchain_m2v; heavy = [m for m in ('faiss', 'torch', 'transformers') if m in sys.modules];"
            " print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
