"""m2v_search.pca against scikit-learn's PCA, which it replaces in distillation and training."""

import numpy as np
import pytest

from m2v_search.pca import PCA

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(3)
    scales = np.geomspace(10.0, 0.1, 48)  # distinct variances: a well-defined ordering of the axes
    mixing = np.linalg.qr(rng.normal(size=(48, 48)))[0]
    return ((rng.normal(size=(2000, 48)) * scales) @ mixing + 1.0).astype(np.float32)


@pytest.mark.parametrize("n_components", [1, 16, 48, 0.5, 0.95, 0.999])
@pytest.mark.parametrize("whiten", [False, True])
def test_matches_scikit_learn(data, n_components, whiten):
    ours = PCA.fit(data, n_components, whiten=whiten)
    theirs = sklearn_decomposition.PCA(n_components=n_components, whiten=whiten, svd_solver="full").fit(data)
    assert ours.n_components == theirs.n_components_
    np.testing.assert_allclose(ours.explained_variance_ratio, theirs.explained_variance_ratio_.sum(), rtol=1e-5)
    np.testing.assert_allclose(ours.variances, theirs.explained_variance_, rtol=1e-4, atol=1e-6 * theirs.explained_variance_[0])
    np.testing.assert_allclose(ours.components, theirs.components_, atol=2e-4)  # same signs too
    np.testing.assert_allclose(ours.transform(data), theirs.transform(data), rtol=1e-3, atol=2e-3)


def test_fewer_rows_than_columns(data):
    few = data[:10]
    ours = PCA.fit(few, 9)
    theirs = sklearn_decomposition.PCA(n_components=9, svd_solver="full").fit(few)
    np.testing.assert_allclose(np.abs(ours.transform(few)), np.abs(theirs.transform(few)), atol=1e-3)
    assert ours.explained_variance_ratio == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("bad, message", [(0, ">= 1"), (1.0, "in \\(0, 1\\)"), ("8", "an int"), (49, "larger than")])
def test_bad_component_counts(data, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        PCA.fit(data, bad)
