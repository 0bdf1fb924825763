"""Input validation shared by every public function and op.

Host arrays are checked by scikit-learn's own ``check_array``, so the messages are the
ones scikit-learn users know ("Input X contains NaN.", "Expected 2D array, got 1D array
instead", "Found array with 0 sample(s) ..."); device arrays get the same checks and the
same texts here. Everything leaves as a C-contiguous float32 or float64 array: float32
stays float32, other real dtypes (float16, integers, bool) become float64, complex is
refused. Inputs are never modified (a converted copy is made when needed).
"""

import numbers

import numpy as np
from sklearn.utils import check_array as _sklearn_check_array

from ._arrays import array_namespace, is_device_array, to_device

METRIC_ALIASES = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
}
METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")


def check_metric(metric):
    """The canonical name of ``metric``, or a ValueError listing the valid ones."""
    if isinstance(metric, str) and metric in METRIC_ALIASES:
        return METRIC_ALIASES[metric]
    raise ValueError(
        f"Unknown metric {metric!r}. Valid metrics are "
        + ", ".join(repr(m) for m in sorted(METRIC_ALIASES))
        + "."
    )


def max_magnitude(n_features):
    """The largest |value| whose squared distances fit in float64 for ``n_features`` columns.

    Every backend computes squared distances, norms and dot products in float64; two rows
    with values up to m are at squared distance up to 4 * n_features * m**2.
    """
    return float(np.sqrt(np.finfo(np.float64).max / (4 * max(n_features, 1))))


def check_magnitude(X, input_name="X"):
    """Refuse float64 values so large that squared distances overflow (scikit-learn returns
    inf or NaN there without a word). float32 input never gets there: it is squared in
    float64."""
    if X.dtype != np.float64 or X.size == 0:
        return X
    xp = array_namespace(X)
    largest = max(float(xp.max(X)), -float(xp.min(X)))
    limit = max_magnitude(X.shape[1])
    if largest > limit:
        raise ValueError(
            f"Input {input_name} contains values of magnitude up to {largest:.3g}; squared "
            f"distances between rows of {X.shape[1]} feature(s) overflow float64 above "
            f"{limit:.3g}. Scale the data down."
        )
    return X


def check_array(X, *, input_name="X", dtype=None, min_samples=1, estimator=None):
    """Validate a 2-D array of samples; returns a C-contiguous float32/float64 array.

    ``dtype`` forces float32 or float64; by default float32 and float64 are kept.
    Device arrays stay on the device.
    """
    if is_device_array(X):
        X = _check_device_array(X, input_name, dtype, min_samples, estimator)
    else:
        X = _sklearn_check_array(
            X,
            dtype=[np.float64, np.float32] if dtype is None else dtype,
            order="C",
            input_name=input_name,
            ensure_min_samples=min_samples,
            estimator=estimator,
        )
    return check_magnitude(X, input_name)


def check_2d_real(X):
    """scikit-learn's refusals of a non-2-D or complex array, for arrays its check_array does
    not see (GPU and Dask arrays)."""
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either using "
            "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
            "if it contains a single sample."
        )
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported")


def _check_device_array(X, input_name, dtype, min_samples, estimator):
    X = to_device(X)
    cupy = array_namespace(X)
    check_2d_real(X)
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    elif X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.shape[0] < min_samples:
        required = f" by {_name(estimator)}" if estimator is not None else ""
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_samples} is required{required}."
        )
    if X.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if not bool(cupy.isfinite(X).all()):
        what = "NaN" if bool(cupy.isnan(X).any()) else f"infinity or a value too large for {X.dtype!r}"
        raise ValueError(f"Input {input_name} contains {what}.")
    return cupy.ascontiguousarray(X)


def _name(estimator):
    return estimator if isinstance(estimator, str) else type(estimator).__name__


def check_pair(X, Y):
    """Validate X and Y for a pairwise op: same kind, same dtype, same number of columns.

    The dtype rule is scikit-learn's: float32 only when both are float32, else float64.
    """
    X = check_array(X, input_name="X")
    Y = check_array(Y, input_name="Y")
    if is_device_array(X) != is_device_array(Y):
        raise ValueError(
            "X and Y must both be host (NumPy) arrays or both GPU arrays; got one of each."
        )
    if X.dtype != Y.dtype:
        X = X.astype(np.float64)
        Y = Y.astype(np.float64)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            "Incompatible dimension for X and Y matrices: "
            f"X.shape[1] == {X.shape[1]} while Y.shape[1] == {Y.shape[1]}"
        )
    return X, Y


def check_n_neighbors(n_neighbors, n_samples_fit):
    """``n_neighbors`` as an int in [1, n_samples_fit], or scikit-learn's error."""
    if not isinstance(n_neighbors, numbers.Integral) or isinstance(n_neighbors, bool):
        raise TypeError(
            f"n_neighbors does not take {type(n_neighbors)} value, enter integer value"
        )
    if n_neighbors <= 0:
        raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
    if n_neighbors > n_samples_fit:
        raise ValueError(
            f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {n_neighbors}, "
            f"n_samples_fit = {n_samples_fit}"
        )
    return int(n_neighbors)


def validate_data(estimator, X, *, reset, dtype=None, min_samples=1):
    """scikit-learn's ``validate_data`` for an estimator, for host and device arrays alike.

    Sets (``reset=True``) or checks (``reset=False``) ``n_features_in_``, and on host input
    ``feature_names_in_``, with scikit-learn's messages.
    """
    if not is_device_array(X):
        from sklearn.utils.validation import validate_data as _sklearn_validate_data

        return check_magnitude(
            _sklearn_validate_data(
                estimator,
                X,
                reset=reset,
                dtype=[np.float64, np.float32] if dtype is None else dtype,
                order="C",
                ensure_min_samples=min_samples,
            )
        )
    X = check_array(X, dtype=dtype, min_samples=min_samples, estimator=estimator)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return X


def check_labels(y, n_samples, input_name="y"):
    """Class labels of the rows of X as int64 codes 0..K-1 (same code, same class).

    ``y`` is any 1-D array of hashable, comparable values (ints, strings, floats); float
    labels must be finite. Raises scikit-learn's messages for a wrong shape or length.
    """
    from sklearn.utils.validation import check_consistent_length, column_or_1d

    from ._arrays import to_host

    y = column_or_1d(to_host(y), warn=True)
    if y.shape[0] != n_samples:
        check_consistent_length(np.empty((n_samples, 0)), y)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"Input {input_name} contains NaN or infinity.")
    if y.dtype.kind not in "biufUSO":
        raise ValueError(f"{input_name} must hold class labels; got dtype {y.dtype}.")
    return np.unique(y, return_inverse=True)[1].astype(np.int64).reshape(-1)


def check_real(value, name, *, low, low_inclusive):
    """``value`` as a finite Python float with ``value > low`` (or ``>=`` when inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}.")
    value = float(value)
    ok = value >= low if low_inclusive else value > low
    if not (np.isfinite(value) and ok):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be finite and {bound} {low}; got {value!r}.")
    return value
