"""Hostile and careless use of the public API, the adapters' core and the HTTP server: every
bad input gets a clear error naming it (never a raw SQLite, NumPy or Python internals error,
never a silent wrong answer), and nothing is left half-written."""

from __future__ import annotations

import json

import sqlite3
from pathlib import Path

import fsspec
import numpy as np
import pytest

from m2v_search.binding import MAX_METADATA_DEPTH, IndexBinding
from m2v_search.index import IndexCorruptError, VectorIndex, filters
from m2v_search.index.filters import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, FilterError, filter_to_sql


@pytest.fixture(scope="module")
def small_index() -> VectorIndex:
    metadata = [{"k": 1, "é": [1, 2], "s": "abc"}, {"k": 2, "é": [3], "s": "xyz"}, {"k": 3}]
    index = VectorIndex.create(dim=4, index_kind="flat")
    index.add_texts([f"t{i}" for i in range(len(metadata))], ids=[f"d{i}" for i in range(len(metadata))],
                    metadatas=metadata, vectors=np.eye(len(metadata), 4, dtype=np.float32))
    return index


# ---------------------------------------------------------------------- filters SQLite cannot take
def _nested(depth: int, leaf: dict) -> dict:
    """``depth`` logical operators inside one another, mixing $not, $or and $and with siblings."""
    filter = leaf
    for level in range(depth):
        kind = level % 3
        if kind == 0:
            filter = {"$not": filter}
        elif kind == 1:
            filter = {"$or": [filter, {"é": {"$contains": 9}}]}
        else:
            filter = {"$and": [filter, {"k": {"$ne": 7}}], "s": {"$exists": True}}
    return filter


@pytest.mark.parametrize("leaf", [{"k": 1}, {"é": {"$ne": 5}}, {"é": {"$contains": "a"}}, {"é": {"$nin": [1, None]}}])
def test_filters_nested_up_to_the_limit_run_and_deeper_ones_get_a_filter_error(small_index: VectorIndex,
                                                                              leaf: dict) -> None:
    # Before: 25 nested $not (or 10 levels of $not/$or) made SQLite fail with "parser stack
    # overflow", and a thousand levels raised RecursionError.
    deepest = _nested(MAX_FILTER_DEPTH, leaf)
    small_index.ids(deepest)  # compiles and runs
    assert small_index.search(np.ones(4, dtype=np.float32), k=3, filter=deepest) is not None
    for depth in (MAX_FILTER_DEPTH + 1, 5000):
        with pytest.raises(FilterError, match="nested more than"):
            small_index.ids(_nested(depth, leaf))


def test_nested_not_keeps_its_meaning(small_index: VectorIndex) -> None:
    filter: dict = {"k": 1}
    for depth in range(1, 12):
        filter = {"$not": filter}
        assert small_index.ids(filter) == (["d1", "d2"] if depth % 2 else ["d0"])
    assert small_index.ids({"$not": {"missing": 1}}) == ["d0", "d1", "d2"]  # a missing key is not a match


@pytest.mark.parametrize("op", ["$or", "$and"])
def test_wide_logical_filters_run_up_to_the_limit(small_index: VectorIndex, op: str) -> None:
    # Before: 999 conditions in one $or/$and (or 999 keys in one dict) failed inside SQLite
    # with "Expression tree is too large (maximum depth 1000)"; 80,000 took minutes to compile.
    conditions = [{"k": {"$ne": n}} if op == "$and" else {"k": n} for n in range(10, 10 + MAX_FILTER_CONDITIONS - 1)]
    assert small_index.ids({op: conditions}) == (["d0", "d1", "d2"] if op == "$and" else [])
    assert small_index.ids({op: [*conditions, {"k": 2}]}) == ["d1"]
    with pytest.raises(FilterError, match=f"more than {MAX_FILTER_CONDITIONS} conditions"):
        small_index.ids({op: [*conditions, {"k": 2}, {"k": 3}]})
    keys = {f"key{n}": {"$exists": False} for n in range(MAX_FILTER_CONDITIONS)}
    assert small_index.ids(keys) == ["d0", "d1", "d2"]


def test_a_like_pattern_longer_than_sqlite_takes_is_a_filter_error(small_index: VectorIndex) -> None:
    # Before: sqlite3.OperationalError "LIKE or GLOB pattern too complex", raised by the search.
    with pytest.raises(FilterError, match="LIKE pattern"):
        small_index.ids({"s": {"$like": "%" * 60_000}})
    assert small_index.ids({"s": {"$like": "%" * 1000 + "b%"}}) == ["d0"]


def test_a_filter_an_older_sqlite_refuses_is_a_filter_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.32 binds at most 999 parameters in a statement: the filter is compiled
    against the running SQLite first, so its refusal is a FilterError, not an error mid-search."""
    old_sqlite = sqlite3.connect(":memory:", check_same_thread=False)
    old_sqlite.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    monkeypatch.setattr(filters, "_checker", old_sqlite)
    filters._sqlite_refuses_cached.cache_clear()
    try:
        with pytest.raises(FilterError, match="SQLite cannot evaluate.*too many SQL variables"):
            filter_to_sql({"$or": [{"k": {"$gt": n}} for n in range(400)]})
        assert filter_to_sql({"k": {"$gt": 1}})[1][-1] == 1
    finally:
        filters._sqlite_refuses_cached.cache_clear()


# ---------------------------------------------------------------------- filter operands
def test_in_takes_any_number_of_values(small_index: VectorIndex) -> None:
    # Before: 300,000 values failed inside SQLite with "too many SQL variables".
    many = list(range(100, 400_100))
    assert small_index.ids({"k": {"$in": [*many, 2]}}) == ["d1"]
    assert small_index.ids({"k": {"$nin": [*many, 2]}}) == ["d0", "d2"]
    assert small_index.ids({"s": [f"s{n}" for n in range(50_000)] + ["xyz"]}) == ["d1"]


def test_in_compares_like_equality(small_index: VectorIndex) -> None:
    assert small_index.ids({"k": {"$in": ["1", "2"]}}) == []  # text is not a number
    assert small_index.ids({"k": {"$in": [1.0, True]}}) == ["d0"]  # 1.0 and true are 1
    assert small_index.ids({"k": {"$in": [None, 3]}}) == ["d2"]
    assert small_index.ids({"s": {"$in": ["abc", "é"]}}) == ["d0"]
    assert small_index.ids({"é": {"$in": [1, 3]}}) == []  # a list value is not a member


def test_the_smallest_int64_is_a_valid_operand() -> None:
    filter_to_sql({"k": -2**63})
    filter_to_sql({"k": {"$in": [2**63 - 1, -2**63]}})
    for out_of_range in (2**63, -2**63 - 1):
        with pytest.raises(FilterError, match="64-bit"):
            filter_to_sql({"k": out_of_range})


@pytest.mark.parametrize("filter", [
    {"\ud800": 1}, {"k": "\udfff"}, {"k": {"$in": ["a", "\ud800"]}}, {"k": {"$like": "%\ud800"}},
    {"k": {"$contains": "\udc00"}}, {"$or": [{"k\udc00": {"$exists": True}}]},
])
def test_a_lone_surrogate_in_a_filter_is_a_filter_error(small_index: VectorIndex, filter: dict) -> None:
    # Before: UnicodeEncodeError from the sqlite3 module, raised by the search.
    with pytest.raises(FilterError, match="surrogate"):
        small_index.ids(filter)


@pytest.mark.parametrize("filter", [{"a\x00b": 1}, {"\x00": {"$exists": True}}, {"k": "a\x00"},
                                    {"s": {"$in": ["abc\x00"]}}, {"s": {"$like": "\x00%"}}])
def test_a_nul_in_a_filter_is_a_filter_error(small_index: VectorIndex, filter: dict) -> None:
    # Before: silently matched nothing, even where the metadata held that very key or value
    # (SQLite's JSON functions end text at a NUL).
    with pytest.raises(FilterError, match="NUL"):
        small_index.ids(filter)


# ---------------------------------------------------------------------- the adapters' core (IndexBinding)
@pytest.fixture()
def binding() -> IndexBinding:
    return IndexBinding(dim=3)


@pytest.mark.parametrize(("vectors", "message"), [
    ([[1.0, 2.0, 3.0], [1.0, 2.0]], r"vectors has rows of different lengths: \[2, 3\]"),
    ([["a", "b", "c"]], r"vectors must hold numbers only"),
    ([[1.0, None, 3.0]], r"vectors must hold numbers only|NaN"),
])
def test_vectors_that_are_not_a_matrix_of_numbers_are_named(vectors: list, message: str) -> None:
    # Before: numpy's "setting an array element with a sequence. The requested array has an
    # inhomogeneous shape after 1 dimensions..." (an Embeddings returning ragged vectors).
    binding = IndexBinding(dim=3)
    with pytest.raises(ValueError, match=message):
        binding.add(["x"] * len(vectors), vectors=vectors)
    assert len(binding) == 0
    binding.add(["x"], vectors=np.ones((1, 3)))
    for query in ([[1.0], [1.0, 2.0]], ["a", "b", "c"], b"abc", None, {"x": 1}):
        with pytest.raises(ValueError, match="a query vector must be a flat list of numbers"):
            binding.search(query, k=1)


@pytest.mark.parametrize("dim", [1.5, "3", True, 0, -2])
def test_dim_must_be_a_positive_integer(dim: object) -> None:
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        IndexBinding(dim=dim)  # type: ignore[arg-type]


def test_an_id_given_twice_in_one_add_is_refused(binding: IndexBinding) -> None:
    # Before: the earlier document was silently dropped, and both ids were returned as added.
    vectors = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"ids\[0\] and ids\[2\] are both 'a'"):
        binding.add(["x", "y", "z"], ids=["a", "b", "a"], vectors=vectors)
    with pytest.raises(ValueError, match=r"ids\[0\] and ids\[1\] are both '1'"):
        binding.add(["x", "y"], ids=[1, "1"], vectors=vectors[:2])
    assert len(binding) == 0
    assert binding.add(["x", "y"], ids=[None, None], vectors=vectors[:2]) != [None, None]  # new ids differ
    assert len(binding) == 2


@pytest.mark.parametrize(("metadata", "message"), [
    ("just text", r"metadatas\[0\] must be a dict of metadata \(or None\), got str"),
    ([["k", "v"]], r"metadatas\[0\] must be a dict of metadata \(or None\), got list"),
    ({1: "x", "a": 2}, r"metadatas\[0\] has the key 1 \(int\); metadata keys must be strings"),
    ({"a": {(1, 2): "x"}}, r"metadatas\[0\]\['a'\] has the key \(1, 2\)"),
    ({"a": [{"b": float("-inf")}]}, r"metadatas\[0\]\['a'\]\[0\]\['b'\] is -inf"),
    ({"big": 2**64}, r"metadatas\[0\]\['big'\] is 18446744073709551616, an integer beyond 64 bits"),
])
def test_metadata_that_is_not_a_json_object_is_refused_by_name(binding: IndexBinding, metadata: object,
                                                               message: str) -> None:
    # Before: "dictionary update sequence element #0 has length 1; 2 is required", or
    # "'<' not supported between instances of 'str' and 'int'" from deep inside the docstore.
    with pytest.raises(ValueError, match=message):
        binding.add(["x"], metadatas=[metadata], vectors=np.ones((1, 3)))
    assert len(binding) == 0


def test_metadata_nested_too_deeply_is_a_value_error(binding: IndexBinding) -> None:
    # Before: RecursionError.
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(ValueError, match=f"nested more than {MAX_METADATA_DEPTH} levels"):
        binding.add(["x"], metadatas=[deep], vectors=np.ones((1, 3)))
    fine: dict = {"leaf": 1}
    for _ in range(MAX_METADATA_DEPTH - 1):
        fine = {"a": fine}
    binding.add(["x"], ids=["ok"], metadatas=[fine], vectors=np.ones((1, 3)))
    assert binding.get(["ok"])[0].metadata == fine


@pytest.mark.parametrize(("k", "fetch_k", "name"), [(0, 20, "k"), (-1, 20, "k"), (2.0, 20, "k"), (True, 20, "k"),
                                                    (2, 0, "fetch_k"), (2, -5, "fetch_k")])
def test_mmr_checks_k_and_fetch_k_as_search_does_k(binding: IndexBinding, k: object, fetch_k: object,
                                                   name: str) -> None:
    # Before: k=0 or k=-1 silently gave [], where search() refuses k=0.
    binding.add(["x", "y"], vectors=np.eye(2, 3, dtype=np.float32))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        binding.search_mmr(np.ones(3), k, fetch_k, lambda query, candidates, count: list(range(count)))
    assert len(binding.search_mmr(np.ones(3), 5, 1, lambda query, candidates, count: list(range(count)))) == 2


def test_saving_to_a_shared_remote_folder_removes_only_what_the_index_wrote(tmp_path: Path) -> None:
    # Before: every remote file named index.* or docstore.* that the new save did not write was
    # deleted (a site's index.html, the user's docstore.notes), and opening downloaded every file.
    fs = fsspec.filesystem("memory")
    root = f"/shared-{tmp_path.name}"
    fs.pipe({f"{root}/index.html": b"<html>", f"{root}/docstore.notes": b"mine", f"{root}/big.bin": b"x" * 1000})
    binding = IndexBinding(dim=3)
    binding.add(["x"], ids=["a"], vectors=np.ones((1, 3)))
    binding.save(root, fs)
    first = {name.rsplit("/", 1)[-1] for name in fs.ls(root, detail=False)}
    binding.add(["y"], ids=["b"], vectors=np.eye(1, 3))
    binding.save(root, fs)
    second = {name.rsplit("/", 1)[-1] for name in fs.ls(root, detail=False)}
    mine = {"index.html", "docstore.notes", "big.bin"}
    assert mine <= first and mine <= second
    data_files = second - mine - {"manifest.json"}
    listed = set(json.loads(fs.cat(f"{root}/manifest.json"))["files"])  # FAISS, docstore, lexical part
    assert data_files == listed and not data_files & first  # the first generation's files are gone
    opened = IndexBinding.open(root, fs)
    assert sorted(opened.ids()) == ["a", "b"]
    downloaded = {p.name for p in Path(opened.index.path).iterdir() if not p.name.startswith(".")}
    assert downloaded == data_files | {"manifest.json"}
    fs.rm(root, recursive=True)


def test_opening_a_remote_folder_whose_manifest_is_not_one_is_index_corrupt(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/tampered-{tmp_path.name}"
    for text in (b"not json", b"[]", b'{"files": 3}', b"[" * 100_000):
        fs.pipe({f"{root}/manifest.json": text})
        with pytest.raises(IndexCorruptError, match="manifest"):
            IndexBinding.open(root, fs)
    fs.rm(root, recursive=True)



def test_a_url_given_without_fs_goes_to_its_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: save("s3://bucket/idx") made a local folder named "s3:" in the working directory,
    # and nothing reached the bucket (open read that local folder back, so it looked fine).
    monkeypatch.chdir(tmp_path)
    binding = IndexBinding(dim=3)
    binding.add(["x"], ids=["x"], vectors=np.ones((1, 3)))
    url = f"memory://bucket-{tmp_path.name}/idx"
    binding.save(url)
    assert list(tmp_path.iterdir()) == []
    assert fsspec.filesystem("memory").exists(f"/bucket-{tmp_path.name}/idx/manifest.json")
    assert IndexBinding.open(url).ids() == ["x"]
    binding.save(f"file://{tmp_path}/local")
    assert IndexBinding.open(tmp_path / "local").ids() == ["x"]
    with pytest.raises(ValueError, match="nosuchproto://x is a URL"):
        binding.save("nosuchproto://x")
    with pytest.raises(ValueError, match=r"nosuchproto://\*\*\*@host/x is a URL") as error:
        binding.save("nosuchproto://user:secret@host/x")
    assert "secret" not in str(error.value)
    fsspec.filesystem("memory").rm(f"/bucket-{tmp_path.name}", recursive=True)


# ---------------------------------------------------------------------- defects in files other helpers own
@pytest.mark.parametrize("threads", [True, False])
def test_encode_names_a_lone_surrogate(threads: bool) -> None:
    from m2v_search import StaticModel
    from m2v_search.errors import InvalidInputError

    model = StaticModel.from_pretrained()
    with pytest.raises(InvalidInputError, match=r"texts\[1\].*surrogate"):
        model.encode(["fine", "bad \ud800"])
    texts = ["fine"] * 7 + ["also bad \udfff here"] + ["fine"] * 3
    with pytest.raises(InvalidInputError, match=r"texts\[7\].*U\+DFFF at character 9"):
        model.encode(texts, batch_size=3, use_multiprocessing=threads)  # the position counts earlier batches
    with pytest.raises(InvalidInputError, match=r"texts\[7\]"):
        model.encode_as_sequence(texts, batch_size=3)
    assert model.encode(["fine", "still fine"]).shape == (2, model.dim)  # the model is still usable


@pytest.mark.parametrize(("metadata", "field"), [({"k": "a\x00b"}, "field 'k'"), ({"k\x00": 1}, "key 'k\\\\x00'"),
                                                 ({"k": {"deep": ["ok", "\x00"]}}, "field 'k.deep\\[1\\]'")])
def test_a_nul_in_metadata_is_refused_naming_the_field(metadata: dict, field: str) -> None:
    index = VectorIndex.create(dim=2, index_kind="flat")
    with pytest.raises(ValueError, match=f"{field} holds a NUL character"):
        index.add_texts(["x"], ids=["nul"], metadatas=[metadata], vectors=np.ones((1, 2)))
    index.add_texts(["a text with \x00 in it"], ids=["ok"], metadatas=[{"k": "a"}], vectors=np.ones((1, 2)))
    assert index.ids({"k": "a"}) == ["ok"]  # a NUL in the text itself is kept (no filter reads it)


def test_saving_into_a_folder_keeps_files_the_index_did_not_write(tmp_path: Path) -> None:
    mine = {"index.old.faiss": "a user's file", "docstore.000001-deadbeef.sqlite": "another", "notes.md": "x"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    binding = IndexBinding(dim=3)
    binding.add(["x"], vectors=np.ones((1, 3)))
    binding.save(tmp_path)  # LangChain's save_local / LlamaIndex's persist into an existing folder
    binding.add(["y"], vectors=np.ones((1, 3)))
    binding.save(tmp_path)
    assert {name: (tmp_path / name).read_text() for name in mine if (tmp_path / name).exists()} == mine


def test_a_bad_filter_fails_on_an_empty_store_too() -> None:
    # Before: search, MMR and ids on a store with nothing in it returned [] for any filter, so a
    # wrong operator went unnoticed until the first documents arrived.
    bad = {"year": {"$regex": "19.*"}}
    for binding in (IndexBinding(), IndexBinding(dim=3)):
        with pytest.raises(FilterError, match="regex"):
            binding.ids(bad)
        with pytest.raises(FilterError, match="regex"):
            binding.search(np.ones(3), 2, filter=bad)
        with pytest.raises(FilterError, match="regex"):
            binding.search_mmr(np.ones(3), 2, 4, lambda query, candidates, count: [], filter=bad)
        assert binding.search(np.ones(3), 2, filter={"year": 1999}) == []


ODD_KEYS = ["a.b", "a[0]", "k'ey", 'q"uote', "back\\slash", " sp ", "emoji🙂", "line\nbreak", "*", "%", "_", "ünï",
            "x$", "[", "]", "..", "a\tb", "\u200b"]


def test_odd_keys_match_exactly_and_never_as_paths() -> None:
    metadata = [{key: position} for position, key in enumerate(ODD_KEYS)]
    metadata.append({"a": {"b": 0}, "k": [{"ey": 2}]})  # what a path reading of "a.b" would find
    index = VectorIndex.create(dim=2, index_kind="flat")
    index.add_texts(["t"] * len(metadata), ids=[f"d{n}" for n in range(len(metadata))], metadatas=metadata,
                    vectors=np.ones((len(metadata), 2), dtype=np.float32))
    for position, key in enumerate(ODD_KEYS):
        assert index.ids({key: position}) == [f"d{position}"], key
        assert index.ids({key: {"$exists": True}}) == [f"d{position}"], key
    assert index.ids({"a.b": {"$exists": True}}) == ["d0"]
    assert index.ids({"a": {"$exists": True}}) == [f"d{len(ODD_KEYS)}"]
