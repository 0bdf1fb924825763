"""Model selection: sweep the number of clusters (and the covariance type) and choose.

    result = fastlatent.selection.sweep_gaussian_mixture(X, n_components=range(2, 31))
    print(result.table.to_markdown())
    result.chosen        # the row of the chosen model
    result.model         # that model, fitted

The choice follows what users of embeddings do (see WORKFLOWS.md): the BIC keeps falling as K
grows, so K is taken at the *elbow* of each covariance type's BIC curve, the K where the curve
bends most (largest discrete second difference); among the covariance types, the elbow model
with the lowest BIC is chosen (BIC values are comparable because every model is fit to the
same data). The silhouette maximum is reported beside it, not used to choose. For k-means the
elbow is taken on the inertia curve.

Work shared across the sweep: the data are validated and converted once; for Gaussian
mixtures with ``init_params="kmeans"`` and ``n_init=1``, the k-means initialisation of each K
is fit once and shared by the four covariance types (the results are the same as four
separate ``GaussianMixture(random_state=...)`` fits, which draw the same k-means).
"""

import csv
import io
import math
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._arrays import to_host
from ._validation import check_array, check_metric
from .cluster import AgglomerativeClustering, KMeans
from .cluster._agglomerative import _cut_tree
from .metrics.cluster import _native_score
from .mixture import GaussianMixture

__all__ = ["ModelTable", "SweepResult", "elbow", "sweep_gaussian_mixture", "sweep_hierarchical", "sweep_kmeans"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
COLUMNS = (
    "model",
    "covariance_type",
    "n_clusters",
    "bic",
    "aic",
    "lower_bound",
    "inertia",
    "silhouette",
    "n_iter",
    "converged",
    "fit_seconds",
)


class ModelTable:
    """A plain table, one row (a dict keyed by ``COLUMNS``) per fitted model."""

    def __init__(self, rows=()):
        self.rows = [dict(row) for row in rows]

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def column(self, name):
        """One column as a NumPy array."""
        return np.array([row[name] for row in self.rows])

    def where(self, **equal):
        """The rows whose columns equal the given values, as a new table."""
        return ModelTable(r for r in self.rows if all(r[k] == v for k, v in equal.items()))

    def to_csv(self, path=None):
        """CSV text (returned, and written to ``path`` when given)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _plain(row[k]) for k in COLUMNS})
        text = buffer.getvalue()
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def to_markdown(self):
        """A Markdown table of the columns that hold values for these models."""
        columns = [c for c in COLUMNS if any(_present(row[c]) for row in self.rows)]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(_format(row[c]) for c in columns) + " |")
        return "\n".join(lines)

    def to_pandas(self):
        """A pandas DataFrame (pandas is optional)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("ModelTable.to_pandas needs pandas: pip install pandas") from exc
        return pandas.DataFrame(self.rows, columns=list(COLUMNS))

    def __repr__(self):
        return self.to_markdown()


def _present(value):
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def _format(value):
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return f"{value:.6g}" if abs(value) < 1e5 else f"{value:.1f}"
    return str(value)


def elbow(ks, values):
    """The K at the elbow of a decreasing curve: the largest discrete second difference.

    With uneven steps the difference of slopes is used, (v[i+1]-v[i])/(k[i+1]-k[i]) -
    (v[i]-v[i-1])/(k[i]-k[i-1]); with fewer than three points, the K of the smallest value.
    """
    ks = np.asarray(ks, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(ks, kind="stable")
    ks, values = ks[order], values[order]
    if len(ks) < 3:
        return int(ks[np.argmin(values)])
    slopes = np.diff(values) / np.diff(ks)
    bend = np.diff(slopes)
    return int(ks[1 + int(np.argmax(bend))])


class SweepResult:
    """What a sweep found.

    Attributes
    ----------
    table : ModelTable, one row per model, in the order fit
    elbows : dict, covariance type (or "kmeans") -> K at the elbow of its curve
    chosen : dict, the row of the chosen model
    best_silhouette : dict or None, the row with the largest silhouette
    model : the chosen estimator, fitted on the sweep's data
    """

    def __init__(self, table, elbows, chosen, best_silhouette, model):
        self.table = table
        self.elbows = elbows
        self.chosen = chosen
        self.best_silhouette = best_silhouette
        self.model = model

    def __repr__(self):
        return (
            f"SweepResult(chosen={self.chosen['model']} {self.chosen['covariance_type']} "
            f"K={self.chosen['n_clusters']}, elbows={self.elbows}, {len(self.table)} models)"
        )


def _check_ks(ks, n_samples, name):
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"{name} must be a non-empty list of positive integers; got {ks}.")
    if ks[-1] > n_samples:
        raise ValueError(f"{name} goes up to {ks[-1]}, more than the {n_samples} samples.")
    return ks


def _progress(items, progress, description):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=description, unit="model")


class _Silhouette:
    """The silhouette column of a sweep: ``score(X, labels)``, NaN when switched off or
    undefined (all rows in one cluster, or one row per cluster). X is the sweep's validated
    host array, so it is not validated again for every model."""

    def __init__(self, enabled, metric, sample_size, random_state, backend):
        self.enabled = enabled
        self.metric = check_metric(metric)
        self.sample_size = sample_size
        self.random_state = random_state
        self.backend = backend

    def __call__(self, X, labels):
        if not self.enabled or not 2 <= len(np.unique(labels)) <= X.shape[0] - 1:
            return float("nan")
        return _native_score(X, labels, self.metric, self.sample_size, self.random_state, self.backend)


def _row(k, silhouette, n_iter, converged, seconds, **columns):
    """A row of the table: the columns every model has, the given ones, NaN for the rest."""
    row = {name: float("nan") for name in COLUMNS}
    row.update(
        covariance_type="",
        n_clusters=k,
        silhouette=silhouette,
        n_iter=n_iter,
        converged=converged,
        fit_seconds=seconds,
    )
    row.update(columns)
    return row


def _fit_row(estimator, k, X, start, score):
    """Fit ``estimator`` and make its row; ``converged`` is False when the fit warned
    (ConvergenceWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = to_host(estimator.fit_predict(X))
    seconds = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return _row(k, score(X, labels), int(estimator.n_iter_), converged, seconds)


class _MixtureFromLabels(GaussianMixture):
    """A GaussianMixture whose "kmeans" initialisation uses labels computed beforehand."""

    def _initial_responsibilities(self, X, random_state):
        resp = np.zeros((X.shape[0], self.n_components), dtype=X.dtype)
        resp[np.arange(X.shape[0]), self._init_labels] = 1
        return resp


def sweep_gaussian_mixture(
    X,
    n_components=range(2, 11),
    covariance_types=COVARIANCE_TYPES,
    *,
    silhouette=True,
    silhouette_metric="euclidean",
    silhouette_sample_size=None,
    random_state=0,
    backend=None,
    progress=None,
    criterion="elbow",
    **params,
):
    """Fit a GaussianMixture for every K in ``n_components`` and every covariance type.

    Parameters
    ----------
    X : array (n_samples, n_features)
    n_components : iterable of int
    covariance_types : iterable of {"full", "tied", "diag", "spherical"}
    silhouette : bool, compute the silhouette of each model's labels
    silhouette_metric : metric of the silhouette
    silhouette_sample_size : int or None, silhouette on a random subset of this size
    random_state : int, the seed of every fit (each fit gets a fresh RandomState(seed), so a
        row of the table is reproduced by ``GaussianMixture(K, random_state=seed)``)
    backend : fastlatent backend for the fits and the silhouette
    progress : bool or None, a tqdm progress bar (None: when stderr is a terminal)
    criterion : {"elbow", "bic", "silhouette"}, how the model is chosen: the elbow rule of
        this module's docstring (default), the lowest BIC, or the largest silhouette
    **params : other GaussianMixture parameters (tol, max_iter, reg_covar, n_init, ...)

    Returns
    -------
    SweepResult
    """
    _check_criterion(criterion, ("elbow", "bic", "silhouette"), silhouette)
    X = to_host(check_array(X))
    ks = _check_ks(n_components, X.shape[0], "n_components")
    score = _Silhouette(silhouette, silhouette_metric, silhouette_sample_size, random_state, backend)
    covariance_types = list(dict.fromkeys(covariance_types))
    for c in covariance_types:
        if c not in COVARIANCE_TYPES:
            raise ValueError(f"Unknown covariance type {c!r}; expected one of {COVARIANCE_TYPES}.")
    share_init = params.get("init_params", "kmeans") == "kmeans" and params.get("n_init", 1) == 1
    rows = []
    init_labels = {}
    work = [(c, k) for c in covariance_types for k in ks]
    for covariance_type, k in _progress(work, progress, "GaussianMixture sweep"):
        start = time.perf_counter()
        if share_init:
            if k not in init_labels:
                init = KMeans(n_clusters=k, n_init=1, random_state=check_random_state(random_state), backend=backend)
                init_labels[k] = to_host(init.fit(X).labels_)
            gmm = _MixtureFromLabels(k, covariance_type=covariance_type, random_state=random_state, backend=backend, **params)
            gmm._init_labels = init_labels[k]
        else:
            gmm = GaussianMixture(k, covariance_type=covariance_type, random_state=random_state, backend=backend, **params)
        row = _fit_row(gmm, k, X, start, score)
        row.update(
            model="gmm",
            covariance_type=covariance_type,
            bic=float(gmm.bic(X)),
            aic=float(gmm.aic(X)),
            lower_bound=float(gmm.lower_bound_),
        )
        row["converged"] = row["converged"] and bool(gmm.converged_)
        rows.append(row)
    table = ModelTable(rows)
    elbows = {}
    candidates = []
    for c in covariance_types:
        sub = table.where(covariance_type=c)
        elbows[c] = elbow(sub.column("n_clusters"), sub.column("bic"))
        candidates.append(sub.where(n_clusters=elbows[c])[0])
    chosen = {
        "elbow": lambda: min(candidates, key=lambda row: row["bic"]),
        "bic": lambda: min(table, key=lambda row: row["bic"]),
        "silhouette": lambda: _best_silhouette(table, required=True),
    }[criterion]()
    model = GaussianMixture(
        chosen["n_clusters"], covariance_type=chosen["covariance_type"], random_state=random_state, backend=backend, **params
    ).fit(X)
    return SweepResult(table, elbows, chosen, _best_silhouette(table), model)


def sweep_kmeans(
    X,
    n_clusters=range(2, 11),
    *,
    metric="euclidean",
    silhouette=True,
    silhouette_sample_size=None,
    random_state=0,
    backend=None,
    progress=None,
    criterion="elbow",
    **params,
):
    """Fit a KMeans for every K in ``n_clusters``; choose K at the elbow of the inertia
    (``criterion="elbow"``) or at the largest silhouette (``criterion="silhouette"``).

    ``metric`` is KMeans' metric ("euclidean", or "cosine" for spherical k-means) and the
    silhouette's. Other parameters as ``sweep_gaussian_mixture``; ``**params`` go to KMeans.
    """
    _check_criterion(criterion, ("elbow", "silhouette"), silhouette)
    X = to_host(check_array(X))
    ks = _check_ks(n_clusters, X.shape[0], "n_clusters")
    score = _Silhouette(silhouette, metric, silhouette_sample_size, random_state, backend)
    rows = []
    for k in _progress(ks, progress, "KMeans sweep"):
        start = time.perf_counter()
        km = KMeans(k, metric=metric, random_state=random_state, backend=backend, **params)
        row = _fit_row(km, k, X, start, score)
        row.update(model="kmeans", inertia=float(km.inertia_))
        row["converged"] = row["converged"] and km.n_iter_ < km.max_iter  # stopped before max_iter
        rows.append(row)
    table = ModelTable(rows)
    k_elbow = elbow(table.column("n_clusters"), table.column("inertia"))
    chosen = table.where(n_clusters=k_elbow)[0] if criterion == "elbow" else _best_silhouette(table, required=True)
    model = KMeans(chosen["n_clusters"], metric=metric, random_state=random_state, backend=backend, **params).fit(X)
    return SweepResult(table, {"kmeans": k_elbow}, chosen, _best_silhouette(table), model)


def sweep_hierarchical(
    X,
    n_clusters=range(2, 11),
    linkage="ward",
    metric="euclidean",
    *,
    distance_threshold=None,
    silhouette=True,
    silhouette_sample_size=None,
    random_state=0,
    backend=None,
    progress=None,
):
    """Build one hierarchical tree and cut it at every K in ``n_clusters`` (or once, at
    ``distance_threshold``); the K with the largest silhouette is chosen.

    The tree is built once (``AgglomerativeClustering``'s, so every cut's labels are the
    estimator's for that K); ``fit_seconds`` is the tree's time on the first row and the cut's
    on the others. ``model`` is an ``AgglomerativeClustering`` for the chosen K (or
    threshold), fitted from the same tree.
    """
    X = to_host(check_array(X, min_samples=2))
    score = _Silhouette(silhouette, metric, silhouette_sample_size, random_state, backend)
    start = time.perf_counter()
    tree = AgglomerativeClustering(
        n_clusters=1, compute_distances=True, linkage=linkage, metric=metric, backend=backend
    ).fit(X)
    n = X.shape[0]
    if distance_threshold is not None:
        ks = [int(np.count_nonzero(tree.distances_ >= distance_threshold)) + 1]
    else:
        ks = _check_ks(n_clusters, n, "n_clusters")
    rows, cuts = [], {}
    for k in _progress(ks, progress, "hierarchical cuts"):
        cuts[k] = _cut_tree(k, tree.children_, n)
        seconds = time.perf_counter() - start
        rows.append(_row(k, score(X, cuts[k]), 0, True, seconds, model="hierarchical", covariance_type=linkage))
        start = time.perf_counter()
    table = ModelTable(rows)
    if len(table) == 1:
        chosen = table[0]
    else:
        _check_criterion("silhouette", ("silhouette",), silhouette)
        chosen = _best_silhouette(table, required=True)
    k = chosen["n_clusters"]
    model = AgglomerativeClustering(
        n_clusters=None if distance_threshold is not None else k,
        distance_threshold=distance_threshold,
        linkage=linkage,
        metric=metric,
        compute_distances=True,
        backend=backend,
    )
    for name in ("children_", "distances_", "n_leaves_", "n_connected_components_", "n_features_in_"):
        setattr(model, name, getattr(tree, name))
    model.n_clusters_ = k
    model.labels_ = cuts[k]
    return SweepResult(table, {}, chosen, _best_silhouette(table), model)


def _check_criterion(criterion, allowed, silhouette):
    if criterion not in allowed:
        raise ValueError(f"criterion must be one of {allowed}; got {criterion!r}.")
    if criterion == "silhouette" and not silhouette:
        raise ValueError('criterion="silhouette" needs silhouette=True.')


def _best_silhouette(table, required=False):
    scores = table.column("silhouette").astype(np.float64)
    if np.all(np.isnan(scores)):
        if required:
            raise ValueError("No model has a silhouette (it needs 2 <= K <= n_samples - 1).")
        return None
    return table[int(np.nanargmax(scores))]
