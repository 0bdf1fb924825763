"""Input handling and the iteration driver shared by the Dask estimators.

X is a Dask array chunked by rows; every column sits in one chunk (rechunked if not), so
each block is a complete set of rows that fastlatent's ops take as they are. NumPy input is
validated by scikit-learn's rules and wrapped with ``da.from_array``; Dask input gets the
same checks and messages, those that need the values (NaN, infinity, magnitude) inside each
block, when the block is computed.
"""

import numpy as np
import dask.array as da

from .._arrays import array_namespace
from .._validation import check_2d_real, max_magnitude, validate_data

# Rows per block when NumPy input is wrapped: big enough that the per-task overhead of the
# scheduler (~1 ms) is small next to the kernels, small enough to spread over workers.
NUMPY_BLOCK_ROWS = 262_144


def is_dask_array(X):
    return isinstance(X, da.Array)


def check_dask_data(estimator, X, *, reset, min_samples=1):
    """X as a row-chunked Dask array of float32/float64 with validated shape.

    Sets (``reset=True``) or checks ``n_features_in_``. Values are checked lazily: each block
    raises scikit-learn's ValueError ("Input X contains NaN.") when computed.
    """
    if not is_dask_array(X):
        X = validate_data(estimator, X, reset=reset, min_samples=min_samples)
        return da.from_array(X, chunks=(min(NUMPY_BLOCK_ROWS, max(1, X.shape[0])), X.shape[1]))
    check_2d_real(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"Dask array of dtype {X.dtype} is not supported; expected a real dtype.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[0] < min_samples:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_samples} is required by {type(estimator).__name__}."
        )
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if reset:
        estimator.n_features_in_ = X.shape[1]
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    # Blocks of zero rows would reach the ops, which refuse empty input.
    if any(c == 0 for c in X.chunks[0]):
        X = X.rechunk({0: tuple(c for c in X.chunks[0] if c > 0)})
    return X.map_blocks(_checked_block, dtype=X.dtype)


def _checked_block(block):
    """One block, C-contiguous, or scikit-learn's ValueError for non-finite values; float64
    values whose squared distances overflow are refused as ``check_magnitude`` does."""
    xp = array_namespace(block)
    if not bool(xp.isfinite(block).all()):
        what = "NaN" if bool(xp.isnan(block).any()) else f"infinity or a value too large for {block.dtype!r}"
        raise ValueError(f"Input X contains {what}.")
    if block.dtype == np.float64 and block.size:
        largest = float(xp.abs(block).max())
        limit = max_magnitude(block.shape[1])
        if largest > limit:
            raise ValueError(
                f"Input X contains values of magnitude up to {largest:.3g}; squared distances "
                f"between rows of {block.shape[1]} feature(s) overflow float64 above {limit:.3g}. "
                "Scale the data down."
            )
    return xp.ascontiguousarray(block)


def check_dask_sample_weight(sample_weight, X):
    """Sample weights as a Dask array chunked like X's rows, of X's dtype (lazy checks in
    each block: non-negative; "at least one non-zero" is checked by the caller on the sum)."""
    if sample_weight is None:
        return da.ones(X.shape[0], chunks=(X.chunks[0],), dtype=X.dtype)
    if not is_dask_array(sample_weight):
        sample_weight = np.asarray(sample_weight, dtype=X.dtype)
        if sample_weight.ndim == 0:
            sample_weight = np.full(X.shape[0], sample_weight, dtype=X.dtype)
        if sample_weight.shape != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected {(X.shape[0],)}!")
        if not np.isfinite(sample_weight).all():
            raise ValueError("Input sample_weight contains NaN or infinity.")
        if (sample_weight < 0).any():
            raise ValueError("Negative values in data passed to `sample_weight`.")
        return da.from_array(sample_weight, chunks=(X.chunks[0],))
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected {(X.shape[0],)}!")
    sample_weight = sample_weight.astype(X.dtype).rechunk((X.chunks[0],))
    return sample_weight.map_blocks(_checked_weights, dtype=X.dtype)


def _checked_weights(block):
    xp = array_namespace(block)
    if not bool(xp.isfinite(block).all()):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if bool((block < 0).any()):
        raise ValueError("Negative values in data passed to `sample_weight`.")
    return xp.ascontiguousarray(block)


def row_blocks(X):
    """The row blocks of X as a list of Delayed objects (one per chunk of rows)."""
    return list(X.to_delayed()[:, 0]) if X.ndim == 2 else list(X.to_delayed())
