"""The README's example runs as written and does what its comments say."""

from __future__ import annotations

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    example = [block for block in blocks if "Settings.embed_model" in block]
    assert len(example) == 1, "the README must hold exactly one full example"
    return example[0]


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    from llama_index.core import Settings

    monkeypatch.setattr(Settings, "_embed_model", None)  # restored after the test
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)

    hits = namespace["hits"]
    assert "Seine" in hits[0].node.get_content()
    assert hits[0].score > hits[1].score
    assert [h.node.metadata["year"] for h in namespace["recent_hits"]] and all(
        h.node.metadata["year"] >= 2005 for h in namespace["recent_hits"]
    )
    response = namespace["response"]
    assert "Photosynthesis" in response.source_nodes[0].node.get_content()
    assert "binary search" in namespace["reloaded_hits"][0].node.get_content()
    assert (tmp_path / "storage" / "m2v" / "manifest.json").is_file()
    assert "Seine" in capsys.readouterr().out


def test_readme_persistence_snippet_runs(tmp_path, monkeypatch, embed_model, corpus_documents):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    snippet = next(block for block in blocks if "load_index_from_storage(" in block)
    from llama_index.core import Settings, StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.vector_stores.m2v import M2VVectorStore

    monkeypatch.setattr(Settings, "_embed_model", None)
    Settings.embed_model = embed_model
    monkeypatch.chdir(tmp_path)
    storage_context = StorageContext.from_defaults(vector_store=M2VVectorStore(model=embed_model))
    VectorStoreIndex.from_documents(corpus_documents, storage_context=storage_context)
    namespace = {
        "storage_context": storage_context,
        "M2VVectorStore": M2VVectorStore,
        "StorageContext": StorageContext,
        "load_index_from_storage": load_index_from_storage,
    }
    exec(compile(snippet, str(README), "exec"), namespace)
    hit = (
        namespace["index"]
        .as_retriever(similarity_top_k=1)
        .retrieve("Why does bread dough rise with yeast?")[0]
    )
    assert hit.node.ref_doc_id == "doc-6"


def test_namespace_packages_are_shared_with_llama_index_core():
    import llama_index
    import llama_index.core
    import llama_index.vector_stores.m2v as module

    assert module.__file__.startswith(str(README.parent))
    assert not hasattr(llama_index, "__file__") or llama_index.__file__ is None  # PEP 420 namespace
    assert any("site-packages" in p for p in llama_index.__path__)  # core's half of the namespace


def test_readme_hybrid_snippet_runs(tmp_path, monkeypatch):
    from llama_index.core import Settings

    monkeypatch.setattr(Settings, "_embed_model", None)
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    snippet = next(block for block in blocks if 'vector_store_query_mode="hybrid"' in block)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # the index the snippet queries
    exec(compile(snippet, str(README), "exec"), namespace)
    hybrid_hits = namespace["hybrid_hits"]
    assert "Photosynthesis" in hybrid_hits[0].node.get_content()
    assert all(0.0 <= hit.score <= 1.0 for hit in hybrid_hits)
    assert [hit.node.get_content()[:14] for hit in namespace["keyword_hits"]] == ["Photosynthesis"]
    assert len(namespace["rrf"].retrieve("river in Paris")) == 2  # similarity_top_k's default
