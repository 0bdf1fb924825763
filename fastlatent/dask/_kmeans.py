"""KMeans on a Dask array: fastlatent's Lloyd loop with the work of each iteration mapped over
the row blocks and only ``k x d``-sized partial results reduced on the client.

One iteration is one task per block, ``_block_step``: ``ops.kmeans_step`` (the fused
assignment and weighted per-cluster sums of the single-machine estimator) on the block, then
a summary of ``k x d`` size: the sums, the weights, the per-cluster counts, the inertia, the
``k`` points of the block farthest from their centres (the candidates for empty clusters) and
a 128-bit BLAKE2 fingerprint of the block's labels, which tells the client whether any label
changed since the previous iteration (the strict convergence rule) without keeping or moving
the labels. The client adds the summaries and runs the single-machine code on the totals:
``_relocate_empty_clusters`` on the candidates, then ``_average_centers``, the centre shift,
the convergence rule. One round trip per iteration; the tasks depend only on X's blocks and
literal centres, so a worker lost in the middle of a fit costs the recomputation of its
blocks. After the loop, one assignment pass computes the labels, which stay on the workers
(``labels_`` is a persisted Dask array).

From the same initial centres the result is the single-machine estimator's: the same
labels (up to exact ties), centres and inertia to rounding (float64 sums added in a
different order). Differences, on purpose:

- Empty clusters: the globally farthest points are found among the ``k`` farthest of every
  block (which contain them), by the single-machine ``_relocate_empty_clusters``; when more
  than one cluster is empty at once, which far point goes to which empty cluster may differ
  from the single-machine pairing (that one depends on ``argpartition``'s order).
- Initialisation ("k-means++", "random", a callable) runs on a uniform random sample of
  ``init_sample_size`` rows (without replacement), gathered on the client, with its sample
  weights: k-means++ seeding on a sample, not k-means||. When the sample is all of X (small
  data) no row is drawn, so the same ``random_state`` gives the single-machine start.
- ``n_init > 1`` keeps the run of lowest inertia (the single-machine check that a better run
  is not the same clustering relabelled needs all the labels on one machine; skipped).
- X is persisted (kept in the workers' memory) for the duration of the fit; in cosine mode,
  its normalised rows instead (as the single-machine estimator copies them).
"""

import hashlib
import numbers
import warnings

import dask
import dask.array as da
import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.random import sample_without_replacement
from sklearn.utils.validation import _is_arraylike_not_scalar, check_is_fitted

from .. import ops
from .._arrays import array_namespace, to_host
from .._validation import check_array
from ..cluster._kmeans import KMeans as _SingleMachineKMeans
from ..cluster._kmeans import _average_centers, _relocate_empty_clusters
from ._blocks import check_dask_data, check_dask_sample_weight, row_blocks


class KMeans(_SingleMachineKMeans):
    """K-means on a Dask array chunked by rows; the parameters and attributes of
    ``fastlatent.KMeans``, plus ``init_sample_size``.

    Parameters
    ----------
    n_clusters, init, n_init, max_iter, tol, verbose, random_state, copy_x, algorithm, metric, precision, backend
        As ``fastlatent.KMeans``. ``init`` as a callable is called on the initialisation
        sample (a NumPy array), not on the whole Dask array.
    init_sample_size : "auto" or int, default="auto"
        Rows drawn uniformly (without replacement) for "k-means++", "random" and callable
        initialisations; "auto" is ``max(10_000, 100 * n_clusters)``. The sample travels to
        the client: ``init_sample_size x n_features`` values.

    Attributes
    ----------
    cluster_centers_ : NumPy array (n_clusters, n_features), X's dtype
    labels_ : Dask array of int32 (n_samples,), chunked like X's rows, persisted
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int

    NumPy input is accepted and wrapped with ``dask.array.from_array`` (blocks of 262,144
    rows). ``predict`` and ``transform`` return lazy Dask arrays. Blocks that are CuPy arrays
    run on the cuda backend through the same ops (untested: no GPU was available).
    """

    _parameter_constraints = {
        **_SingleMachineKMeans._parameter_constraints,
        "init_sample_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        metric="euclidean",
        precision="exact",
        backend=None,
        init_sample_size="auto",
    ):
        super().__init__(
            n_clusters=n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            verbose=verbose,
            random_state=random_state,
            copy_x=copy_x,
            algorithm=algorithm,
            metric=metric,
            precision=precision,
            backend=backend,
        )
        self.init_sample_size = init_sample_size

    # ---- preparation -------------------------------------------------------------------------

    def _prepare_dask(self, X):
        return X if self.metric != "cosine" else X.map_blocks(self._prepare, dtype=X.dtype)

    def _init_sample(self, X_fit, sample_weight, random_state):
        """The rows the initialisation sees, with their weights, as NumPy arrays."""
        n_samples = X_fit.shape[0]
        size = max(10_000, 100 * self.n_clusters) if self.init_sample_size == "auto" else self.init_sample_size
        size = max(size, self.n_clusters)
        if size >= n_samples:
            sample, weight = dask.compute(X_fit, sample_weight)
        else:
            rows = np.sort(sample_without_replacement(n_samples, size, random_state=random_state))
            sample, weight = dask.compute(X_fit[rows], sample_weight[rows])
        sample, weight = to_host(sample), to_host(weight)
        if not weight.any():  # every sampled row has weight 0: seed on the rows alone
            weight = np.ones_like(weight)
        return np.ascontiguousarray(sample), np.ascontiguousarray(weight)

    def _init_centroids_dask(self, X_fit, init, random_state, sample_weight):
        if _is_arraylike_not_scalar(init):
            return np.array(self._normalize_centers(init), dtype=X_fit.dtype, copy=True)
        sample, weight = self._init_sample(X_fit, sample_weight, random_state)
        # The single-machine initialisation, on the sample (normalised already in cosine mode).
        return self._init_centroids(sample, init, random_state, weight)

    # ---- the algorithm -----------------------------------------------------------------------

    def _lloyd_dask(self, X_blocks, weight_blocks, centers, zero_rows_weight):
        """One run of Lloyd's algorithm from ``centers``: the single-machine loop, its work
        mapped over the blocks. Returns (label blocks, inertia, centres, n_iter, counts)."""
        step = dask.delayed(_block_step, pure=False)
        fingerprints_old = None
        strict_convergence = False
        for i in range(self.max_iter):
            shared = _shared(centers)
            summaries = dask.compute(*[step(x, w, shared, self.backend, self.precision) for x, w in zip(X_blocks, weight_blocks)])
            sums, weights, counts, inertia, candidates, fingerprints = _reduce_summaries(summaries)
            if self.verbose:
                print(f"Iteration {i}, inertia {self._total_inertia(inertia, zero_rows_weight)}.")
            _relocate_empty_clusters(*candidates, sums, weights)
            new_centers = self._normalize_centers(_average_centers(sums, weights).astype(centers.dtype))
            center_shift_total = float(((new_centers - centers) ** 2).sum())
            centers_assigned, centers = centers, new_centers
            if fingerprints_old is not None and fingerprints == fingerprints_old:
                if self.verbose:
                    print(f"Converged at iteration {i}: strict convergence.")
                strict_convergence = True
                break
            if center_shift_total <= self._tol:
                if self.verbose:
                    print(
                        f"Converged at iteration {i}: center shift {center_shift_total} "
                        f"within tolerance {self._tol}."
                    )
                break
            fingerprints_old = fingerprints
        if strict_convergence:
            # The last iteration's labels (and, as the single-machine estimator reports, its
            # inertia): the assignment to the centres it started from, kept on the workers.
            labels, _, _ = self._assign_dask(X_blocks, weight_blocks, centers_assigned)
        else:
            # A final assignment, so that the labels match the final centres.
            labels, inertia, counts = self._assign_dask(X_blocks, weight_blocks, centers)
        return labels, self._total_inertia(inertia, zero_rows_weight), centers, i + 1, counts

    def _assign_dask(self, X_blocks, weight_blocks, centers):
        """Labels (persisted blocks), inertia and counts of every row under ``centers``."""
        assign = dask.delayed(_block_assign, nout=2, pure=False)
        shared = _shared(centers)
        results = [assign(x, w, shared, self.backend, self.precision) for x, w in zip(X_blocks, weight_blocks)]
        persisted = dask.persist(*[r[0] for r in results], *[r[1] for r in results])
        labels = list(persisted[: len(results)])
        summaries = dask.compute(*persisted[len(results) :])
        inertia = float(sum(s[0] for s in summaries))
        counts = np.sum([s[1] for s in summaries], axis=0)
        return labels, inertia, counts

    def _total_inertia(self, inertia, zero_rows_weight):
        if self.metric != "cosine":
            return inertia
        # 1 - x.c = (|x - c|^2 + 1 - |x|^2) / 2 for a unit centre (see the single-machine one).
        return (inertia + zero_rows_weight) / 2

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the k-means clustering of X, a Dask (or NumPy) array (n_samples, n_features)."""
        X = check_dask_data(self, X, reset=True)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        sample_weight = check_dask_sample_weight(sample_weight, X)
        init = self.init
        if _is_arraylike_not_scalar(init):
            init = check_array(init, input_name="init", dtype=X.dtype)
            self._validate_center_shape(X, init)
        X_fit, sample_weight = dask.persist(self._prepare_dask(X), sample_weight)
        X_for_variance = X_fit if self.metric != "cosine" else X
        statistics = [X_for_variance.var(axis=0, dtype=np.float64).mean(), sample_weight.sum(dtype=np.float64)]
        if self.metric == "cosine":
            statistics.append(sample_weight[~(X_fit != 0).any(axis=1)].sum(dtype=np.float64))
        statistics = [float(s) for s in dask.compute(*statistics)]
        if statistics[1] == 0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        zero_rows_weight = statistics[2] if self.metric == "cosine" else 0.0
        self._set_tol_and_n_init(statistics[0])

        random_state = check_random_state(self.random_state)
        X_blocks, weight_blocks = row_blocks(X_fit), row_blocks(sample_weight)
        best = None
        for _ in range(self._n_init):
            centers_init = self._init_centroids_dask(X_fit, init, random_state, sample_weight)
            if self.verbose:
                print("Initialization complete")
            run = self._lloyd_dask(X_blocks, weight_blocks, centers_init, zero_rows_weight)
            if best is None or run[1] < best[1]:
                best = run

        labels, inertia, centers, n_iter, counts = best
        distinct_clusters = int(np.count_nonzero(counts))
        if distinct_clusters < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct_clusters}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers
        self._n_features_out = self.n_clusters
        self.labels_ = _concatenate_blocks(labels, X.chunks[0], np.int32, X._meta)
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    # ---- using the model (lazy) --------------------------------------------------------------

    def _check_test_data_dask(self, X):
        check_is_fitted(self)
        return check_dask_data(self, X, reset=False)

    def predict(self, X):
        """Index of the nearest centre of each row of X: a lazy Dask array of int32."""
        X = self._check_test_data_dask(X)
        return self._prepare_dask(X).map_blocks(
            _block_predict,
            self.cluster_centers_,
            self.backend,
            self.precision,
            dtype=np.int32,
            drop_axis=1,
            meta=_empty_like_meta(X._meta, 1, np.int32),
        )

    def fit_predict(self, X, y=None, sample_weight=None):
        """``fit(X).labels_`` (a Dask array)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Distances from each row of X to every centre: a lazy Dask array (n, n_clusters)."""
        return self._transform(self._check_test_data_dask(X))

    def _transform(self, X):
        return X.map_blocks(
            _block_transform,
            self.cluster_centers_,
            self.metric,
            self.backend,
            dtype=X.dtype,
            chunks=(X.chunks[0], (self.n_clusters,)),
            meta=_empty_like_meta(X._meta, 2, X.dtype),
        )

    def fit_transform(self, X, y=None, sample_weight=None):
        """``fit(X).transform(X)`` (lazy)."""
        self.fit(X, sample_weight=sample_weight)
        return self.transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X under the fitted centres (computed now)."""
        X = self._check_test_data_dask(X)
        sample_weight = check_dask_sample_weight(sample_weight, X)
        X_fit = self._prepare_dask(X)
        _, inertia, _ = self._assign_dask(row_blocks(X_fit), row_blocks(sample_weight), self.cluster_centers_)
        zero_rows_weight = 0.0
        if self.metric == "cosine":
            zero_rows_weight = float(sample_weight[~(X_fit != 0).any(axis=1)].sum(dtype=np.float64).compute())
        return -self._total_inertia(inertia, zero_rows_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


# ---- per-block tasks (run on the workers) ------------------------------------------------------


def _block_arrays(X, sample_weight, centers):
    xp = array_namespace(X)
    X = xp.ascontiguousarray(X)
    sample_weight = xp.ascontiguousarray(xp.asarray(sample_weight, dtype=X.dtype))
    centers = xp.ascontiguousarray(xp.asarray(centers, dtype=X.dtype))
    return X, sample_weight, centers


def _block_step(X, sample_weight, centers, backend, precision):
    """One Lloyd iteration's work on one block: a summary of k x d size (the labels stay
    here; a fingerprint of them tells the client whether they changed)."""
    X, sample_weight, centers = _block_arrays(X, sample_weight, centers)
    xp = array_namespace(X)
    n_clusters = centers.shape[0]
    labels, distances, sums, weights = ops.kmeans_step(
        X, sample_weight, centers, precision=precision, backend=backend, check_input=False
    )
    inertia = float((sample_weight.astype(np.float64) * distances).sum())
    counts = xp.bincount(labels, minlength=n_clusters)
    # The block's k farthest points hold every point of the global top n_empty <= k in it.
    n_candidates = min(n_clusters, X.shape[0])
    far = xp.argpartition(distances, X.shape[0] - n_candidates)[X.shape[0] - n_candidates :]
    candidates = tuple(to_host(a) for a in (X[far], sample_weight[far], labels[far], distances[far]))
    fingerprint = hashlib.blake2b(to_host(labels).tobytes(), digest_size=16).digest()
    return to_host(sums), to_host(weights), to_host(counts), inertia, candidates, fingerprint


def _block_assign(X, sample_weight, centers, backend, precision):
    X, sample_weight, centers = _block_arrays(X, sample_weight, centers)
    xp = array_namespace(X)
    labels, distances = ops.kmeans_assign(
        X, centers, precision=precision, backend=backend, check_input=False
    )
    inertia = float((sample_weight.astype(np.float64) * distances).sum())
    return labels, (inertia, to_host(xp.bincount(labels, minlength=centers.shape[0])))


def _block_predict(X, centers, backend, precision):
    X, _, centers = _block_arrays(X, X[:, 0], centers)
    labels, _ = ops.kmeans_assign(X, centers, precision=precision, backend=backend, check_input=False)
    return labels


def _block_transform(X, centers, metric, backend):
    X, _, centers = _block_arrays(X, X[:, 0], centers)
    return ops.pairwise_distances(X, centers, metric, backend=backend)


# ---- on the client ------------------------------------------------------------------------------


def _reduce_summaries(summaries):
    """Totals of the blocks' summaries: sums, weights, counts, inertia, the far-point
    candidates as (rows, weights, labels, distances), and the blocks' label fingerprints."""
    sums = np.sum([s[0] for s in summaries], axis=0)
    weights = np.sum([s[1] for s in summaries], axis=0)
    counts = np.sum([s[2] for s in summaries], axis=0)
    inertia = float(sum(s[3] for s in summaries))
    candidates = tuple(np.concatenate([s[4][j] for s in summaries]) for j in range(4))
    return sums, weights, counts, inertia, candidates, [s[5] for s in summaries]


def _shared(value):
    """``value`` as one task of the graph, so that the blocks' tasks share it (a literal
    argument would be serialised once per task)."""
    return dask.delayed(value, traverse=False)


def _concatenate_blocks(blocks, row_chunks, dtype, meta):
    """Delayed 1-D blocks (persisted) as one Dask array."""
    arrays = [
        da.from_delayed(block, shape=(n,), dtype=dtype, meta=_empty_like_meta(meta, 1, dtype))
        for block, n in zip(blocks, row_chunks)
    ]
    return da.concatenate(arrays)


def _empty_like_meta(meta, ndim, dtype):
    xp = array_namespace(meta) if meta is not None else np
    return xp.empty((0,) * ndim, dtype=dtype)
