"""Two-dimensional views of embeddings, to look at clusters before trusting them.

    Y = fastlatent.views.embed_2d(X, method="tsne")
    fig = fastlatent.views.plot_2d(Y, labels, title="clusters")

"pca" (scikit-learn's PCA, fast, linear), "tsne" (scikit-learn's TSNE; perplexity 30 by
default, capped below the number of rows) and "umap" (umap-learn, ``pip install
"fastlatent[umap]"``). Plotting needs matplotlib (``pip install "fastlatent[cli]"``).
"""

import numpy as np

from ._arrays import host_if_device
from ._validation import check_array

__all__ = ["VIEW_METHODS", "embed_2d", "plot_2d"]

VIEW_METHODS = ("pca", "tsne", "umap")


def embed_2d(X, method="pca", *, random_state=0, **params):
    """Coordinates (n_samples, 2) of the rows of X in a 2-D view.

    Parameters
    ----------
    X : array (n_samples, n_features); GPU arrays are copied to the host
    method : {"pca", "tsne", "umap"}
    random_state : seed of the method
    **params : passed to the method's estimator (e.g. ``perplexity=50`` for t-SNE)
    """
    if method not in VIEW_METHODS:
        raise ValueError(f"Unknown view method {method!r}; expected one of {VIEW_METHODS}.")
    X = check_array(host_if_device(X), min_samples=2)
    if X.shape[1] <= 2:  # already two-dimensional (or one: pad with a zero column)
        return np.column_stack([X, np.zeros((X.shape[0], 2 - X.shape[1]), dtype=X.dtype)])
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=random_state, **params).fit_transform(X)
    if method == "tsne":
        from sklearn.manifold import TSNE

        params.setdefault("perplexity", min(30.0, (X.shape[0] - 1) / 3))
        return TSNE(2, random_state=random_state, init="pca", **params).fit_transform(X)
    try:
        import umap
    except ImportError:
        raise ImportError(
            "embed_2d(method='umap') needs umap-learn: pip install 'fastlatent[umap]'"
        ) from None
    return umap.UMAP(n_components=2, random_state=random_state, **params).fit_transform(X)


def plot_2d(Y, labels=None, *, ax=None, title=None, point_size=4):
    """Scatter plot of 2-D coordinates coloured by ``labels``; returns the figure."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_2d needs matplotlib: pip install 'fastlatent[cli]'") from None
    Y = np.asarray(Y)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    colour = None
    if labels is not None:
        _, colour = np.unique(np.asarray(labels), return_inverse=True)
    ax.scatter(Y[:, 0], Y[:, 1], c=colour, cmap="tab20", s=point_size, linewidths=0)
    if title:
        ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
