"""Fusion of a dense and a lexical result list: relative score, distribution-based, reciprocal rank."""

from __future__ import annotations

import numpy as np
import pytest

from m2v_search.index.fusion import METHODS, check_alpha, fuse


def leg(ids: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int64), np.array(scores, dtype=np.float32)


DENSE = leg([1, 2, 3, 4], [0.9, 0.8, 0.5, 0.1])
LEXICAL = leg([3, 5, 1], [12.0, 6.0, 3.0])


def test_relative_fusion_min_max_scales_each_leg_and_weights_them() -> None:
    ids, scores = fuse(DENSE, LEXICAL, 10, alpha=0.5, method="relative")
    dense = {1: 1.0, 2: 0.875, 3: 0.5, 4: 0.0}
    lexical = {3: 1.0, 5: 3 / 9, 1: 0.0}
    expected = {i: 0.5 * dense.get(i, 0.0) + 0.5 * lexical.get(i, 0.0) for i in {1, 2, 3, 4, 5}}
    assert ids.tolist() == sorted(expected, key=lambda i: -expected[i])
    np.testing.assert_allclose(scores, [expected[i] for i in ids.tolist()], rtol=1e-6)


def test_alpha_one_is_dense_and_alpha_zero_is_lexical() -> None:
    for method in METHODS:
        assert fuse(DENSE, LEXICAL, 10, alpha=1.0, method=method)[0].tolist() == [1, 2, 3, 4]
        assert fuse(DENSE, LEXICAL, 10, alpha=0.0, method=method)[0].tolist() == [3, 5, 1]


def test_alpha_moves_the_ranking_between_the_legs() -> None:
    assert fuse(DENSE, LEXICAL, 1, alpha=0.9)[0].tolist() == [1]
    assert fuse(DENSE, LEXICAL, 1, alpha=0.1)[0].tolist() == [3]


def test_reciprocal_rank_fusion_uses_ranks_only() -> None:
    ids, scores = fuse(DENSE, LEXICAL, 10, alpha=0.5, method="rrf")
    rank_score = {1: 0.5 / 61 + 0.5 / 63, 3: 0.5 / 63 + 0.5 / 61, 2: 0.5 / 62, 5: 0.5 / 62, 4: 0.5 / 64}
    np.testing.assert_allclose(scores, sorted(rank_score.values(), reverse=True), rtol=1e-6)
    assert ids.tolist()[:2] == [1, 3]  # equal scores: the dense leg's order breaks the tie
    scaled = fuse(leg([1, 2, 3, 4], [90, 80, 50, 10]), leg([3, 5, 1], [1.2, 0.6, 0.3]), 10, method="rrf")
    assert scaled[0].tolist() == ids.tolist()


def test_distribution_fusion_scales_by_mean_and_three_deviations() -> None:
    dense_scores = np.array([0.9, 0.8, 0.5, 0.1])
    lexical_scores = np.array([12.0, 6.0, 3.0])

    def scaled(values: np.ndarray) -> np.ndarray:
        low, high = values.mean() - 3 * values.std(), values.mean() + 3 * values.std()
        return np.clip((values - low) / (high - low), 0, 1)

    dense = dict(zip([1, 2, 3, 4], scaled(dense_scores)))
    lexical = dict(zip([3, 5, 1], scaled(lexical_scores)))
    expected = {i: 0.4 * dense.get(i, 0.0) + 0.6 * lexical.get(i, 0.0) for i in {1, 2, 3, 4, 5}}
    ids, scores = fuse(DENSE, LEXICAL, 10, alpha=0.4, method="dbsf")
    assert ids.tolist() == sorted(expected, key=lambda i: -expected[i])
    np.testing.assert_allclose(scores, [expected[i] for i in ids.tolist()], rtol=1e-5)


def test_an_empty_leg_leaves_the_other_order() -> None:
    empty = leg([], [])
    for method in METHODS:
        assert fuse(DENSE, empty, 10, alpha=0.3, method=method)[0].tolist() == [1, 2, 3, 4]
        assert fuse(empty, LEXICAL, 10, alpha=0.7, method=method)[0].tolist() == [3, 5, 1]
        ids, scores = fuse(empty, empty, 10, method=method)
        assert len(ids) == 0 and len(scores) == 0


def test_one_candidate_or_equal_scores_do_not_divide_by_zero() -> None:
    ids, scores = fuse(leg([7], [0.3]), leg([7, 8], [2.0, 2.0]), 5, alpha=0.5)
    assert ids.tolist() == [7, 8] and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, [1.0, 0.5])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_alpha_outside_zero_one_is_refused(alpha: object) -> None:
    with pytest.raises(ValueError, match="alpha must be"):
        fuse(DENSE, LEXICAL, 10, alpha=alpha)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be"):
        check_alpha(alpha)  # type: ignore[arg-type]


def test_unknown_method_and_bad_k_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion method 'max'"):
        fuse(DENSE, LEXICAL, 10, method="max")
    with pytest.raises(ValueError, match="k must be"):
        fuse(DENSE, LEXICAL, 0)


def test_modes_and_leg_depth() -> None:
    from m2v_search.index.fusion import CANDIDATES, check_mode, leg_depth

    assert [check_mode(m) for m in ("dense", "lexical", "hybrid")] == ["dense", "lexical", "hybrid"]
    with pytest.raises(ValueError, match="unknown search mode 'sparse'; use one of dense, lexical, hybrid"):
        check_mode("sparse")
    assert leg_depth(10) == CANDIDATES and leg_depth(CANDIDATES + 5) == CANDIDATES + 5


def test_fuse_batch_pads_like_faiss() -> None:
    from m2v_search.index.fusion import fuse_batch

    dense_scores = np.array([[0.9, 0.8, 0.5, 0.1], [0.7, 0.2, -1.0, -1.0]], dtype=np.float32)
    dense_labels = np.array([[1, 2, 3, 4], [6, 7, -1, -1]], dtype=np.int64)
    lexical = [LEXICAL, leg([], [])]
    scores, labels = fuse_batch(dense_scores, dense_labels, lexical, 3, alpha=0.5)
    assert labels.shape == scores.shape == (2, 3)
    np.testing.assert_array_equal(labels[0], fuse(DENSE, LEXICAL, 3, alpha=0.5)[0])
    assert labels[1].tolist() == [6, 7, -1] and np.isnan(scores[1, 2])
    only_lexical = fuse_batch(None, None, lexical, 2, alpha=0.5)
    assert only_lexical[1].tolist() == [[3, 5], [-1, -1]]


@pytest.mark.parametrize("method", ["relative", "dbsf"])
def test_a_leg_that_cannot_rank_scores_zero_when_it_matches_nothing(method: str) -> None:
    """An empty text's zero query vector gives cosine 0 for every document: that leg carries no
    match, so fused scores are 0, not a perfect 1 for every document."""
    ids = np.arange(5)
    _, scores = fuse((ids, np.zeros(5)), (ids[:0], np.zeros(0)), 5, alpha=0.4, method=method)
    assert scores.tolist() == [0.0] * 5
    _, scores = fuse((ids, np.full(5, 0.3)), (ids[:0], np.zeros(0)), 5, alpha=0.4, method=method)
    assert scores.tolist() == [1.0] * 5  # equal, real matches: equally good
