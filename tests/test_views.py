"""2-D views: shapes, methods, clear errors."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from fastlatent import views


def test_pca_view_is_sklearns_pca(rng):
    X = rng.normal(size=(60, 5))
    np.testing.assert_allclose(views.embed_2d(X, "pca"), PCA(2, random_state=0).fit_transform(X))


def test_tsne_view_separates_blobs(rng):
    X = np.concatenate([rng.normal(size=(30, 6)), rng.normal(size=(30, 6)) + 20])
    Y = views.embed_2d(X, "tsne", perplexity=10)
    assert Y.shape == (60, 2) and np.all(np.isfinite(Y))
    gap = np.linalg.norm(Y[:30].mean(0) - Y[30:].mean(0))
    assert gap > 3 * max(Y[:30].std(), Y[30:].std())


def test_narrow_input_is_padded(rng):
    X = rng.normal(size=(10, 1))
    Y = views.embed_2d(X, "tsne")
    np.testing.assert_array_equal(Y[:, 0], X[:, 0])
    assert np.all(Y[:, 1] == 0)


def test_errors(rng):
    with pytest.raises(ValueError, match="Unknown view method 'mds'"):
        views.embed_2d(rng.normal(size=(10, 3)), "mds")
    with pytest.raises(ValueError, match="Input X contains NaN"):
        views.embed_2d(np.full((10, 3), np.nan))
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install 'fastlatent\\[umap\\]'"):
            views.embed_2d(rng.normal(size=(10, 3)), "umap")


def test_plot_2d(rng):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = views.plot_2d(rng.normal(size=(20, 2)), np.arange(20) % 3, title="t")
    assert fig.axes[0].get_title() == "t" and len(fig.axes[0].collections) == 1
