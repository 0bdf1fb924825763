"""k-means ops: assignment (the fused argmin kernel), the weighted update, k-means++ seeding.

``check_input=False`` skips validation for callers that validated once already (the
estimators' Lloyd loop): validating scans X, which costs as much as an assignment.
"""

import numpy as np

from .._arrays import array_namespace, to_like
from .._validation import check_array, check_pair
from . import _dispatch
from ._reduced_precision import check_precision, effective
from .distances import nearest_rows


def kmeans_assign(X, centers, *, precision="exact", backend=None, check_input=True):
    """Nearest centre of each row of X and the squared euclidean distance to it.

    Returns (labels int32 (n,), squared distances (n,) of X's dtype). Ties go to the lower
    centre index. One kernel serves fit and predict: the fused distance + argmin.
    ``precision`` as in ``pairwise_distances_argmin_min``: the labels are the exact ones.
    """
    reference = X
    if check_input:
        X, centers = check_pair(X, centers)
        check_precision(precision, "sqeuclidean")
    distances, labels = nearest_rows(
        "pairwise_distances_argmin_min", (X, centers), 1, "sqeuclidean", precision, backend
    )
    return to_like(reference, labels.astype(np.int32), distances)


def kmeans_distances(X, centers, labels, *, backend=None, check_input=True):
    """Squared euclidean distance of each row of X to its own centre, ``centers[labels]``.

    Returns an (n,) array of X's dtype, summed exactly in float64: scikit-learn's
    ``_inertia`` before the weighted sum. With the labels of ``kmeans_step(X, ., centers)``,
    the cpu backend returns that step's distances bit for bit, so a Lloyd loop can skip them
    in its steps (``return_distances=False``) and ask here on the rare iteration that needs them.
    """
    reference = X
    if check_input:
        X, centers = check_pair(X, centers)
        labels = _check_labels(X, labels, centers.shape[0])
    distances = _dispatch.run("kmeans_distances", backend, (X, centers, labels))
    return to_like(reference, distances)


def _check_weights_and_labels(X, sample_weight, labels, n_clusters):
    xp = array_namespace(X)
    sample_weight = xp.ascontiguousarray(xp.asarray(sample_weight, dtype=X.dtype))
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({X.shape[0]},).")
    if labels is None:
        return sample_weight, None
    return sample_weight, _check_labels(X, labels, n_clusters)


def _check_labels(X, labels, n_clusters):
    xp = array_namespace(X)
    labels = xp.ascontiguousarray(xp.asarray(labels, dtype=np.int32))
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels has shape {labels.shape}; expected ({X.shape[0]},).")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_clusters):
        raise ValueError(
            f"labels must lie in [0, {n_clusters}); got [{int(labels.min())}, {int(labels.max())}]."
        )
    return labels


def kmeans_update(X, sample_weight, labels, n_clusters, *, backend=None, check_input=True):
    """Weighted per-cluster sums and weights: the M-step of Lloyd's algorithm.

    Returns (sums (n_clusters, n_features) float64, weights (n_clusters,) float64). The
    sums are accumulated in float64 in a fixed order, so they do not depend on the number
    of threads.
    """
    reference = X
    if check_input:
        X = check_array(X)
        sample_weight, labels = _check_weights_and_labels(X, sample_weight, labels, n_clusters)
    sums, weights = _dispatch.run("kmeans_update", backend, (X, sample_weight, labels), int(n_clusters))
    return to_like(reference, sums, weights)


def kmeans_step(
    X, sample_weight, centers, *, precision="exact", return_distances=True, backend=None,
    check_input=True,
):
    """The work of one Lloyd iteration: ``kmeans_assign`` then ``kmeans_update`` on its labels.

    Returns (labels int32, squared distances of X's dtype, sums float64 (k, d), weights
    float64 (k,)). Backends with a fused kernel (cpu) do both in one pass over X, while each
    block of rows is in cache; the others run the two ops in turn. Same results either way
    (the fused sums may differ in the last float64 bits: per-thread partials).
    ``return_distances=False`` returns None in place of the distances, which the fused kernel
    then skips (a Lloyd iteration needs only the labels and sums; ``kmeans_distances`` gives
    the same distances later).
    """
    reference = X
    if check_input:
        X, centers = check_pair(X, centers)
        sample_weight, _ = _check_weights_and_labels(X, sample_weight, None, centers.shape[0])
        check_precision(precision, "sqeuclidean")
    name, module = _dispatch.select_backend(backend, X, centers)
    # The fused kernels are exact; a reduced precision on tensor cores takes the two ops.
    precision = effective(precision, name, module, stacklevel=3)
    if hasattr(module, "kmeans_step") and precision == "exact":
        labels, distances, sums, weights = _dispatch.run(
            "kmeans_step", backend, (X, sample_weight, centers), bool(return_distances)
        )
    else:
        labels, distances = kmeans_assign(
            X, centers, precision=precision, backend=backend, check_input=False
        )
        sums, weights = kmeans_update(
            X, sample_weight, labels, centers.shape[0], backend=backend, check_input=False
        )
    if not return_distances:
        labels, sums, weights = to_like(reference, labels, sums, weights)
        return labels, None, sums, weights
    return to_like(reference, labels, distances, sums, weights)


def kmeans_plusplus(X, n_clusters, sample_weight, random_state, *, n_local_trials=None, backend=None):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii), as scikit-learn does it.

    ``random_state`` is a ``numpy.random.RandomState``; it is drawn from in the same order
    as ``sklearn.cluster.kmeans_plusplus``, so the same seed picks the same rows (up to
    rounding in the distances). Each step draws 2 + log(k) candidates with probability
    proportional to the weighted squared distance to the nearest chosen centre, and keeps
    the one that lowers the potential most. Backends with the ``kmeans_plusplus_step`` op
    (cpu, numpy) do a step in one call (the cpu kernel in one pass over X); the others run
    their distance kernel from the candidates to all rows and reduce in NumPy / CuPy. The
    distances are the same either way (``pairwise_distances``'s, rounded to X's dtype); the
    potentials may differ in the last float64 bits (summation order).

    Returns (centers (n_clusters, n_features) of X's dtype, indices int64 (n_clusters,)).
    """
    xp = array_namespace(X)
    n_samples = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    weight_host = np.asarray(sample_weight.get() if xp is not np else sample_weight, dtype=np.float64)

    def squared_distances(rows):
        # All rows against the few candidates, transposed: the kernels parallelise over the
        # rows of their first argument (10x faster than candidates against all rows).
        to_rows = _dispatch.run("pairwise_distances", backend, (X, X[rows]), "sqeuclidean")
        return xp.ascontiguousarray(xp.asarray(to_rows, dtype=np.float64).T)

    weight = xp.asarray(weight_host)
    first = random_state.choice(n_samples, p=weight_host / weight_host.sum())
    indices = np.full(n_clusters, -1, dtype=np.int64)
    indices[0] = first
    _, module = _dispatch.select_backend(backend, X)
    if hasattr(module, "kmeans_plusplus_step"):  # a fused step; else distances, then NumPy
        # The first centre is a step with one candidate and nothing chosen yet (closest = inf).
        _, potential, closest = _dispatch.run(
            "kmeans_plusplus_step",
            backend,
            (X, weight_host, np.full(n_samples, np.inf), np.array([first], dtype=np.int64)),
        )
        for c in range(1, n_clusters):
            targets = random_state.uniform(size=n_local_trials) * potential
            cumulative = np.cumsum(weight_host * closest)
            candidates = np.searchsorted(cumulative, targets).astype(np.int64)
            np.clip(candidates, None, n_samples - 1, out=candidates)
            best, potential, closest = _dispatch.run(
                "kmeans_plusplus_step", backend, (X, weight_host, closest, candidates)
            )
            indices[c] = candidates[best]
        return X[indices.tolist()], indices
    closest = squared_distances([first])[0]
    potential = float(closest @ weight)
    for c in range(1, n_clusters):
        targets = random_state.uniform(size=n_local_trials) * potential
        cumulative = xp.cumsum(weight * closest)
        candidates = np.asarray(xp.searchsorted(cumulative, xp.asarray(targets)).tolist())
        np.clip(candidates, None, n_samples - 1, out=candidates)
        to_candidates = xp.minimum(closest, squared_distances(candidates.tolist()))
        candidate_potentials = to_candidates @ weight
        best = int(xp.argmin(candidate_potentials))
        potential = float(candidate_potentials[best])
        closest = to_candidates[best]
        indices[c] = candidates[best]
    return X[indices.tolist()], indices
