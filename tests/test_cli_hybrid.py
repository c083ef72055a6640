"""m2v-index and the lexical part: build (with and without), search --mode/--alpha, eval, reindex, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("bm25s")

from m2v_search.cli import index_main as main  # noqa: E402

WORDS = ["apple", "bridge", "castle", "dolphin", "engine", "forest", "guitar", "harbor", "island", "jungle"]


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_corpus(path: Path, n: int = 120) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"the {WORDS[i % 10]} story number{i}",
                                        "group": i % 3}) + "\n" for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture()
def built(tmp_path: Path, tiny_model_folder: Path, capsys) -> Path:
    directory = tmp_path / "idx"
    code, _, _ = run(capsys, "build", write_corpus(tmp_path / "c.jsonl"), "-o", directory, "--model",
                     tiny_model_folder, "--quiet")
    assert code == 0
    return directory


def hits(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_build_has_a_lexical_part_and_search_modes(built: Path, capsys) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["lexical"]["documents"] == 120
    code, out, _ = run(capsys, "search", built, "-q", "number42", "-k", "3", "--mode", "lexical")
    assert code == 0 and hits(out)[0]["id"] == "d42"
    code, out, _ = run(capsys, "search", built, "-q", "number42 castle", "-k", "3")  # hybrid by default
    assert code == 0 and hits(out)[0]["id"] == "d42"
    code, out, _ = run(capsys, "search", built, "-q", "castle", "-k", "5", "--mode", "hybrid", "--alpha", "0.2",
                       "--fusion", "rrf", "--filter", "group=1")
    assert code == 0 and all(hit["metadata"]["group"] == 1 for hit in hits(out))
    code, out, _ = run(capsys, "info", built, "--format", "json")
    assert code == 0 and json.loads(out)["lexical"]["language"] == "english"
    code, out, _ = run(capsys, "verify", built)
    assert code == 0 and json.loads(out)["ok"] is True


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "sparse"], "invalid choice: 'sparse'"),
    (["--alpha", "1.5"], "expected a number in [0, 1]"),
    (["--alpha", "nan"], "expected a number in [0, 1]"),
])
def test_bad_mode_and_alpha_are_usage_errors(built: Path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(built), "-q", "apple", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_no_lexical_build_then_reindex(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    directory = tmp_path / "plain"
    code, _, _ = run(capsys, "build", write_corpus(tmp_path / "c.jsonl"), "-o", directory, "--model",
                     tiny_model_folder, "--quiet", "--no-lexical")
    assert code == 0 and "lexical" not in json.loads((directory / "manifest.json").read_text())
    code, out, _ = run(capsys, "search", directory, "-q", "number4", "-k", "2")  # dense, as before
    assert code == 0 and len(hits(out)) == 2
    code, out, err = run(capsys, "search", directory, "-q", "number4", "--mode", "lexical")
    assert code == 3 and out == "" and "m2v-index reindex --lexical" in err and "Traceback" not in err
    code, out, _ = run(capsys, "reindex", directory, "--lexical", "--quiet")
    assert code == 0 and json.loads(out)["lexical"] is True
    code, out, _ = run(capsys, "search", directory, "-q", "number4", "-k", "1", "--mode", "lexical")
    assert code == 0 and hits(out)[0]["id"] == "d4"
    code, out, _ = run(capsys, "reindex", directory, "--no-lexical", "--quiet")
    assert code == 0 and "lexical" not in json.loads((directory / "manifest.json").read_text())
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(write_corpus(tmp_path / "c.jsonl")), "-o", str(tmp_path / "x"), "--model",
              str(tiny_model_folder), "--quiet", "--lexical-language", "klingon"])
    assert exit_info.value.code == 2 and "not a Snowball language" in capsys.readouterr().err



def test_reindex_of_a_url_or_a_missing_directory_creates_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["reindex", "s3://bucket/idx", "--lexical"])
    assert exit_info.value.code == 2 and "is a URL" in capsys.readouterr().err
    code, _, err = run(capsys, "reindex", "mistyped", "--lexical")
    assert code != 0 and "mistyped" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither s3:/bucket/idx/.lock nor mistyped/.lock

def test_add_and_delete_keep_the_lexical_part(built: Path, tmp_path: Path, capsys) -> None:
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "z", "text": "a zeppelin"}) + "\n", encoding="utf-8")
    assert run(capsys, "add", built, extra, "--quiet")[0] == 0
    assert run(capsys, "delete", built, "d7")[0] == 0
    code, out, _ = run(capsys, "search", built, "-q", "zeppelin number7", "-k", "5", "--mode", "lexical")
    assert code == 0 and [hit["id"] for hit in hits(out)] == ["z"]
    code, out, _ = run(capsys, "verify", built)
    assert code == 0 and json.loads(out)["ok"] is True


def test_eval_prints_every_mode(built: Path, tmp_path: Path, capsys) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"query": f"number{i} {WORDS[i % 10]}", "relevant": [f"d{i}"]}) + "\n"
                               for i in range(0, 120, 7)), encoding="utf-8")
    code, out, _ = run(capsys, "eval", built, queries, "--format", "json", "--recall-at", "5,20")
    results = {row["mode"]: row for row in json.loads(out)}
    assert code == 0 and set(results) == {"dense", "lexical", "hybrid"}
    assert results["lexical"]["mrr@10"] == pytest.approx(1.0) and results["hybrid"]["mrr@10"] > 0.9
    assert {"recall@5", "recall@20", "ndcg@10", "latency_p50_ms", "latency_p99_ms"} <= set(results["dense"])
    code, out, _ = run(capsys, "eval", built, queries, "--mode", "hybrid", "--alpha", "0.7")
    assert code == 0 and out.startswith("| mode |") and "hybrid alpha=0.7" in out
    qrels = tmp_path / "qrels.tsv"
    beir = tmp_path / "beir.jsonl"
    beir.write_text(json.dumps({"_id": "q1", "text": "number3"}) + "\n", encoding="utf-8")
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n", encoding="utf-8")
    code, out, _ = run(capsys, "eval", built, beir, "--qrels", qrels, "--mode", "lexical", "--format", "json")
    assert code == 0 and json.loads(out)[0]["mrr@10"] == pytest.approx(1.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\n', encoding="utf-8")
    code, out, err = run(capsys, "eval", built, bad)
    assert code == 3 and "bad.jsonl:1: missing field 'relevant'" in err and out == ""
