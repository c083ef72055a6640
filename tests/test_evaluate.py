"""Retrieval evaluation: query files (JSONL and BEIR), metrics, a timed run, table and JSON output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from m2v_search.evaluate import (
    EvalQuery,
    EvaluationDataError,
    evaluate_mode,
    format_json,
    format_table,
    load_beir_queries,
    load_jsonl_queries,
    load_queries,
    ndcg,
    reciprocal_rank,
    recall,
)


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_ten() -> None:
    assert reciprocal_rank(["a", "b", "c"], {"c": 1.0}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"b": 1.0, "c": 1.0}) == 0.5
    assert reciprocal_rank([str(i) for i in range(20)], {"12": 1.0}) == 0.0
    assert reciprocal_rank([], {"a": 1.0}) == 0.0


def test_ndcg_against_a_hand_computed_value() -> None:
    relevant = {"a": 3.0, "b": 1.0}
    ranked = ["x", "b", "a"]
    dcg = 1 / math.log2(3) + 3 / math.log2(4)
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg(ranked, relevant) == pytest.approx(dcg / ideal)
    assert ndcg(["a", "b"], relevant) == pytest.approx(1.0)
    assert ndcg(["x", "y"], relevant) == 0.0


def test_recall_at_depth() -> None:
    assert recall(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, 2) == pytest.approx(1 / 3)
    assert recall(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, 3) == pytest.approx(2 / 3)


def test_jsonl_queries_with_lists_and_grades(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"query": "first", "relevant": ["d1", 7]}\n\n'
                    '{"id": "q2", "query": "second", "relevant": {"d2": 2, "d3": 0}}\n', encoding="utf-8")
    queries = load_queries(path)
    assert queries == [EvalQuery("1", "first", {"d1": 1.0, "7": 1.0}), EvalQuery("q2", "second", {"d2": 2.0})]


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not valid JSON"),
    ('["a"]', "expected a JSON object"),
    ('{"relevant": ["a"]}', "field 'query'"),
    ('{"query": "x"}', "missing field 'relevant'"),
    ('{"query": "x", "relevant": "a"}', "field 'relevant' must be"),
    ('{"query": "x", "relevant": []}', "names no relevant document"),
    ('{"query": "x", "relevant": {"a": "high"}}', "finite number"),
])
def test_bad_jsonl_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"query": "ok", "relevant": ["a"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(EvaluationDataError, match=rf"queries.jsonl:2: .*{message}"):
        load_jsonl_queries(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match="no such file"):
        load_jsonl_queries(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(EvaluationDataError, match="no queries"):
        load_jsonl_queries(tmp_path / "empty.jsonl")


def test_beir_queries_and_qrels(tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "one"}\n{"_id": "q2", "text": "two"}\n{"_id": 3, "text": "three"}\n',
                       encoding="utf-8")
    qrels = tmp_path / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td3\t0\n3\td9\t1\n", encoding="utf-8")
    loaded = load_beir_queries(queries, qrels)
    assert loaded == [EvalQuery("q1", "one", {"d1": 1.0, "d2": 2.0}), EvalQuery("q2", "two", {}),
                      EvalQuery("3", "three", {"d9": 1.0})]  # q2 judged with a 0 only: kept, scores 0
    assert load_queries(queries, qrels) == loaded


@pytest.mark.parametrize(("qrels", "message"), [
    ("q1\td1\n", r"test.tsv:1: expected 3 tab-separated fields"),
    ("q1\td1\t1\nq1\td2\tx\n", r"test.tsv:2: score 'x' is not a number"),
    ("q9\td1\t1\n", r"test.tsv:1: query id 'q9' is not in"),
    ("q1\td1\t0\n", r"no query has a relevant document"),
    ("q1\td1\tnan\n", r"test.tsv:1: score 'nan' is not finite"),
])
def test_bad_qrels_are_named(tmp_path: Path, qrels: str, message: str) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "one"}\n', encoding="utf-8")
    (tmp_path / "test.tsv").write_text(qrels, encoding="utf-8")
    with pytest.raises(EvaluationDataError, match=message):
        load_beir_queries(queries, tmp_path / "test.tsv")


def test_evaluate_mode_scores_a_search_function() -> None:
    rankings = {"alpha": ["d1", "d2"], "beta": ["d9", "d8", "d3"], "gamma": []}
    queries = [EvalQuery("1", "alpha", {"d1": 1.0}), EvalQuery("2", "beta", {"d3": 1.0, "d4": 1.0}),
               EvalQuery("3", "gamma", {"d5": 1.0})]
    depths: list[int] = []

    def search(text: str, k: int) -> list[str]:
        depths.append(k)
        return rankings[text]

    result = evaluate_mode(search, queries, mode="dense", recall_at=(2, 50), settings={"alpha": 0.5})
    assert set(depths) == {50} and len(depths) == 4  # one untimed warm-up call
    assert result.mrr_at_10 == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert result.recall == {2: pytest.approx(1 / 3), 50: pytest.approx((1 + 0.5) / 3)}
    assert result.latency_p50_ms >= 0 and result.latency_p99_ms >= result.latency_p50_ms
    table = format_table([result])
    assert "| dense alpha=0.5 | 3 | 44.44 |" in table and "recall@50" in table
    payload = json.loads(format_json([result]))
    assert payload[0]["mode"] == "dense" and payload[0]["recall@2"] == pytest.approx(1 / 3)
    assert payload[0]["alpha"] == 0.5
    with pytest.raises(ValueError, match="no queries"):
        evaluate_mode(search, [], mode="dense")
    with pytest.raises(ValueError, match="recall depths"):
        evaluate_mode(search, queries, mode="dense", recall_at=(0,))


def test_a_byte_order_mark_is_dropped_as_the_other_readers_drop_it(tmp_path: Path) -> None:
    """Files saved by Windows editors start with a BOM; eval once called line 1 invalid JSON."""
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"query": "cats", "relevant": ["d1"]}).encode() + b"\n")
    assert [q.text for q in load_jsonl_queries(path)] == ["cats"]
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries.write_bytes(b"\xef\xbb\xbf" + json.dumps({"_id": "q1", "text": "cats"}).encode() + b"\n")
    qrels.write_bytes(b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert [(q.id, q.relevant) for q in load_beir_queries(queries, qrels)] == [("q1", {"d1": 1.0})]


def test_qrels_later_rows_win_before_zero_grades_are_dropped_and_the_header_may_follow_blank_lines(
        tmp_path: Path) -> None:
    """As BEIR reads qrels (a dict per query, later rows win; grade 0 is not relevant): ``q3 d3 1`` then
    ``q3 d3 0`` once kept d3 relevant, because zero rows were dropped before the later row could win."""
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": f"text {i}"}) + "\n" for i in (1, 2, 3)))
    qrels.write_text("\nquery-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\nq2\td2\t2\nq3\td3\t1\nq3\td3\t0\n"
                     "q3\td4\t1\n")
    found = {q.id: q.relevant for q in load_beir_queries(queries, qrels)}
    assert found == {"q1": {"d1": 1.0}, "q2": {"d2": 2.0}, "q3": {"d4": 1.0}}
    qrels.write_text("q3\td3\t1\nq3\td3\t0\n")
    with pytest.raises(EvaluationDataError, match="no query has a relevant document"):
        load_beir_queries(queries, qrels)


def test_a_query_judged_with_zeros_only_scores_zero_as_pytrec_eval_scores_it(tmp_path: Path) -> None:
    """pytrec_eval (BEIR's scorer) gives a judged query without a relevant document 0 on every
    measure, and BEIR averages over every judged query; such a query was once dropped, raising the
    mean. A query the qrels do not name is still skipped."""
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": f"text {i}"}) + "\n" for i in (1, 2, 3)))
    qrels.write_text("q1\td1\t1\nq2\td2\t0\n")
    loaded = load_beir_queries(queries, qrels)
    assert [(q.id, q.relevant) for q in loaded] == [("q1", {"d1": 1.0}), ("q2", {})]
    result = evaluate_mode(lambda text, k: ["d1", "d2"], loaded, mode="dense", warmup=False)
    assert result.queries == 2 and math.isclose(result.mrr_at_10, 0.5) and math.isclose(result.ndcg_at_10, 0.5)
    assert math.isclose(result.recall[10], 0.5)
