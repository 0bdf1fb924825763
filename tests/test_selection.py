"""Model selection sweeps: every row equals a separate fit, the elbow rule, the table."""

import csv
import io

import numpy as np
import pytest

import fastlatent as fl
from fastlatent import selection


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0, 0], [12, 0, 0], [0, 12, 0], [0, 0, 12]], dtype=float)
    labels = np.repeat(np.arange(4), 60)
    return centres[labels] + rng.normal(size=(240, 3)), labels


@pytest.mark.parametrize(
    "ks, values, expected",
    [
        ([1, 2, 3, 4, 5, 6], [100, 60, 30, 28, 27, 26], 3),
        ([2, 4, 8, 16], [100, 50, 45, 44], 4),  # uneven steps: slopes, not raw differences
        ([5, 3, 4, 2, 6], [27, 30, 28, 60, 26], 3),  # order of the points does not matter
        ([2, 3], [10, 5], 3),  # fewer than three points: the smallest value
    ],
)
def test_elbow(ks, values, expected):
    assert selection.elbow(ks, values) == expected


def test_gaussian_mixture_sweep_rows_equal_separate_fits(blobs):
    X, _ = blobs
    result = selection.sweep_gaussian_mixture(X, range(2, 7), ["tied", "diag"], random_state=0)
    assert len(result.table) == 10
    for row in result.table.rows[::3]:
        gmm = fl.GaussianMixture(row["n_clusters"], covariance_type=row["covariance_type"], random_state=0).fit(X)
        assert row["bic"] == pytest.approx(gmm.bic(X), rel=1e-10)
        assert row["aic"] == pytest.approx(gmm.aic(X), rel=1e-10)
        assert row["lower_bound"] == pytest.approx(gmm.lower_bound_, rel=1e-10)
        assert row["n_iter"] == gmm.n_iter_
        assert row["silhouette"] == pytest.approx(fl.silhouette_score(X, gmm.predict(X)), rel=1e-10)


def test_gaussian_mixture_sweep_chooses_the_true_k(blobs):
    X, labels = blobs
    result = selection.sweep_gaussian_mixture(X, range(2, 9), ["full", "spherical"], random_state=0)
    assert result.elbows == {"full": 4, "spherical": 4}
    assert result.chosen["n_clusters"] == 4
    assert result.model.n_components == 4 and result.model.covariance_type == result.chosen["covariance_type"]
    assert result.model.bic(X) == pytest.approx(result.chosen["bic"], rel=1e-10)
    assert fl.clustering_accuracy(labels, result.model.predict(X)) == 1.0
    assert result.best_silhouette["n_clusters"] == 4


def test_kmeans_sweep(blobs):
    X, labels = blobs
    result = selection.sweep_kmeans(X, [2, 3, 4, 5, 6], random_state=0)
    for row in result.table:
        km = fl.KMeans(row["n_clusters"], random_state=0).fit(X)
        assert row["inertia"] == pytest.approx(km.inertia_, rel=1e-10)
    assert result.chosen["n_clusters"] == 4 and result.elbows == {"kmeans": 4}
    assert fl.clustering_accuracy(labels, result.model.labels_) == 1.0
    cosine = selection.sweep_kmeans(X + 30, [3, 4], metric="cosine", criterion="silhouette", random_state=0)
    assert cosine.chosen is cosine.best_silhouette or cosine.chosen == cosine.best_silhouette


def test_criteria(blobs):
    X, _ = blobs
    by_bic = selection.sweep_gaussian_mixture(X, [3, 4, 5], ["diag"], criterion="bic")
    assert by_bic.chosen["bic"] == by_bic.table.column("bic").min()
    by_silhouette = selection.sweep_gaussian_mixture(X, [3, 4, 5], ["diag"], criterion="silhouette")
    assert by_silhouette.chosen["silhouette"] == by_silhouette.table.column("silhouette").max()
    with pytest.raises(ValueError, match="criterion must be one of"):
        selection.sweep_kmeans(X, [2, 3], criterion="bic")
    with pytest.raises(ValueError, match="needs silhouette=True"):
        selection.sweep_kmeans(X, [2, 3], criterion="silhouette", silhouette=False)


def test_table_exports(blobs):
    X, _ = blobs
    table = selection.sweep_kmeans(X, [2, 3], silhouette=False).table
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [int(r["n_clusters"]) for r in rows] == [2, 3]
    assert float(rows[0]["inertia"]) == pytest.approx(table[0]["inertia"])
    markdown = table.to_markdown().splitlines()
    assert markdown[0].startswith("| model | covariance_type | n_clusters |") or "inertia" in markdown[0]
    assert "bic" not in markdown[0]  # columns without values are left out
    assert len(markdown) == 4


def test_bad_arguments(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="more than the 240 samples"):
        selection.sweep_kmeans(X, [2, 500])
    with pytest.raises(ValueError, match="positive integers"):
        selection.sweep_kmeans(X, [])
    with pytest.raises(ValueError, match="Unknown covariance type"):
        selection.sweep_gaussian_mixture(X, [2], ["round"])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        selection.sweep_kmeans(bad, [2])


@pytest.mark.parametrize("linkage", ["ward", "average", "single"])
def test_hierarchical_sweep_cuts_one_tree(blobs, linkage):
    X, labels = blobs
    result = selection.sweep_hierarchical(X, range(2, 7), linkage)
    for row in result.table:
        fit = fl.AgglomerativeClustering(n_clusters=row["n_clusters"], linkage=linkage).fit(X)
        assert row["silhouette"] == pytest.approx(fl.silhouette_score(X, fit.labels_), rel=1e-10)
    assert result.chosen["n_clusters"] == 4  # the largest silhouette
    reference = fl.AgglomerativeClustering(n_clusters=4, linkage=linkage, compute_distances=True).fit(X)
    np.testing.assert_array_equal(result.model.labels_, reference.labels_)
    np.testing.assert_array_equal(result.model.children_, reference.children_)
    np.testing.assert_allclose(result.model.distances_, reference.distances_)
    assert fl.clustering_accuracy(labels, result.model.labels_) == 1.0


def test_hierarchical_sweep_at_a_threshold(blobs):
    X, _ = blobs
    result = selection.sweep_hierarchical(X, distance_threshold=20.0)
    reference = fl.AgglomerativeClustering(n_clusters=None, distance_threshold=20.0).fit(X)
    assert len(result.table) == 1 and result.chosen["n_clusters"] == reference.n_clusters_
    np.testing.assert_array_equal(result.model.labels_, reference.labels_)
