"""CUDA backend: the kernels of ``fastlatent._cuda`` (csrc/cuda/distances.cu) on CuPy arrays.

Same contract as ``fastlatent.backends.numpy`` (see its docstring): inputs are validated by
``fastlatent.ops``; outputs have the input's dtype; indices are int64; ties go to the lower
index. X and Y may be NumPy or CuPy arrays (or anything ``cupy.asarray`` takes); results are
CuPy arrays on the current device, enqueued on the current CuPy stream and not waited for (the
ops layer converts them back to NumPy when the input was NumPy).

``pairwise_distances`` uses the direct form (no cancellation), accumulated in float64 for
float64 input; for float32 input each chunk of 16 features is summed in float32 and the chunk
sums are added in float64 (the final sqrt / cosine step too), then rounded to float32 once.
``pairwise_distances_argmin_min`` and ``kneighbors`` screen candidates in the input precision
and compute the distances they return in float64, re-checking in float64 every row whose
screening margin is within the rounding error bound, so their indices equal the reference's.

Importing this module fails (ImportError) when CuPy or the compiled module is missing; the
backend registry then reports the backend unavailable.
"""

import cupy
import numpy as np

from fastlatent import _cuda

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def unavailable_reason():
    """Why this backend cannot run here, or None when it can."""
    if _cuda.device_count() == 0:
        return "no CUDA device found"
    return None


def describe():
    return f"CUDA on {_cuda.device_name()}"


def _device_arrays(op, X, Y, metric):
    """X and Y as C-contiguous CuPy arrays on the current device, and their dtype's name."""
    X = cupy.ascontiguousarray(cupy.asarray(X))
    Y = cupy.ascontiguousarray(cupy.asarray(Y))
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"{op}: X and Y must be 2-D, got shapes {X.shape} and {Y.shape}")
    if X.dtype != Y.dtype or X.dtype not in _DTYPE_NAMES:
        raise ValueError(
            f"{op}: X and Y must share one dtype, float32 or float64; got {X.dtype} and {Y.dtype}"
        )
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"{op}: X and Y must have the same number of columns, got {X.shape[1]} and {Y.shape[1]}"
        )
    if X.shape[0] == 0 or Y.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{op}: X and Y must be non-empty, got shapes {X.shape} and {Y.shape}")
    if metric not in METRICS:
        raise ValueError(f"{op}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    device = cupy.cuda.Device().id
    if X.device.id != device or Y.device.id != device:
        raise ValueError(
            f"{op}: X and Y must be on the current device {device}, "
            f"got devices {X.device.id} and {Y.device.id}"
        )
    return X, Y, _DTYPE_NAMES[X.dtype]


def _stream():
    return cupy.cuda.get_current_stream().ptr


def pairwise_distances(X, Y, metric):
    X, Y, dtype = _device_arrays("pairwise_distances", X, Y, metric)
    out = cupy.empty((X.shape[0], Y.shape[0]), dtype=X.dtype)
    _cuda.pairwise_distances(
        X.data.ptr, Y.data.ptr, out.data.ptr,
        X.shape[0], Y.shape[0], X.shape[1], metric, dtype, _stream(),
    )  # fmt: skip
    return out


def pairwise_distances_argmin_min(X, Y, metric):
    X, Y, dtype = _device_arrays("pairwise_distances_argmin_min", X, Y, metric)
    indices = cupy.empty(X.shape[0], dtype=cupy.int64)
    distances = cupy.empty(X.shape[0], dtype=X.dtype)
    _cuda.pairwise_distances_argmin_min(
        X.data.ptr, Y.data.ptr, indices.data.ptr, distances.data.ptr,
        X.shape[0], Y.shape[0], X.shape[1], metric, dtype, _stream(),
    )  # fmt: skip
    return indices, distances


def kneighbors(X, Y, n_neighbors, metric):
    X, Y, dtype = _device_arrays("kneighbors", X, Y, metric)
    n_neighbors = int(n_neighbors)
    if not 1 <= n_neighbors <= Y.shape[0]:
        raise ValueError(
            f"kneighbors: n_neighbors must be in [1, {Y.shape[0]}] (the rows of Y), got {n_neighbors}"
        )
    distances = cupy.empty((X.shape[0], n_neighbors), dtype=X.dtype)
    indices = cupy.empty((X.shape[0], n_neighbors), dtype=cupy.int64)
    _cuda.kneighbors(
        X.data.ptr, Y.data.ptr, distances.data.ptr, indices.data.ptr,
        X.shape[0], Y.shape[0], X.shape[1], n_neighbors, metric, dtype, _stream(),
    )  # fmt: skip
    return distances, indices


def kmeans_update(X, sample_weight, labels, n_clusters):
    """Per-cluster weighted sums and weights in float64, as a sparse one-hot product.

    ``onehot @ X`` with onehot[k, i] = sample_weight[i] where labels[i] == k: cuSPARSE's CSR
    product sums each output in a fixed order, so repeated calls give identical results.
    """
    import cupyx.scipy.sparse as sparse

    X = cupy.asarray(X)
    n_samples = X.shape[0]
    weight = cupy.asarray(sample_weight, dtype=cupy.float64)
    labels = cupy.asarray(labels, dtype=cupy.int64)
    onehot = sparse.csr_matrix(
        (weight, (labels, cupy.arange(n_samples))), shape=(n_clusters, n_samples)
    )
    sums = cupy.ascontiguousarray(onehot @ X.astype(cupy.float64))
    weights = cupy.asarray(onehot.sum(axis=1)).ravel()  # bincount would add with atomics
    return sums, weights


def kmeans_distances(X, centers, labels):
    """CuPy through the reference's code (elementwise work and a row sum). NOT RUN on a GPU."""
    from .numpy import kmeans_distances as blocked

    return blocked(cupy.asarray(X), cupy.asarray(centers), cupy.asarray(labels))


# ---- tensor-core products for precision="tf32" / "bf16" (fastlatent/ops/_reduced_precision.py).
# cuBLAS through CuPy's gemmEx binding; NOT RUN on a GPU by its author (no GPU in that session):
# the gpu-marked tests in tests/ops/test_reduced_precision.py check it against the exact kernels.
_CUDA_R_32F, _CUDA_R_16BF = 0, 14
_CUBLAS_COMPUTE_32F, _CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 77
_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_CUBLAS_GEMM_DEFAULT = -1

# float32 -> bfloat16 bits, rounded to nearest, ties to even (a value within half a bfloat16 unit
# of the float32 maximum becomes inf; nearest() proves no row whose norms reach 2^50).
_to_bfloat16 = cupy.ElementwiseKernel(
    "float32 x",
    "uint16 y",
    "unsigned int b = __float_as_uint(x); b += 0x7fffu + ((b >> 16) & 1u); y = (unsigned short)(b >> 16);",
    "fastlatent_to_bfloat16",
)


def tensor_core_gemm(A, B, precision):
    """A @ B.T for float32 C-contiguous A (m x d) and B (n x d), float32 out, on tensor cores:
    inputs as TF32 (cuBLAS's FAST_TF32 compute type) or bfloat16 (rounded here), accumulated
    in float32."""
    from cupy.cuda import device

    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:  # where CuPy keeps it elsewhere
        from cupy.cuda import cublas

    A = cupy.ascontiguousarray(A, dtype=cupy.float32)
    B = cupy.ascontiguousarray(B, dtype=cupy.float32)
    m, d = A.shape
    n = B.shape[0]
    out = cupy.empty((m, n), dtype=cupy.float32)
    if precision == "bf16":
        A, B = _to_bfloat16(A), _to_bfloat16(B)
        in_type, compute = _CUDA_R_16BF, _CUBLAS_COMPUTE_32F
    elif precision == "tf32":
        in_type, compute = _CUDA_R_32F, _CUBLAS_COMPUTE_32F_FAST_TF32
    else:
        raise ValueError(f"tensor_core_gemm: precision must be 'tf32' or 'bf16', got {precision!r}")
    one = np.ones(1, dtype=np.float32)
    zero = np.zeros(1, dtype=np.float32)
    # Row-major out (m x n) is column-major out^T (n x m) = B A^T, where the row-major buffers
    # of B and A read column-major are B^T (d x n) and A^T (d x m): op T on the first, N on the
    # second, all leading dimensions the row lengths.
    cublas.gemmEx(
        device.get_cublas_handle(), _CUBLAS_OP_T, _CUBLAS_OP_N, n, m, d,
        one.ctypes.data, B.data.ptr, in_type, d, A.data.ptr, in_type, d,
        zero.ctypes.data, out.data.ptr, _CUDA_R_32F, n, compute, _CUBLAS_GEMM_DEFAULT,
    )  # fmt: skip
    return out


# ---- soft nearest neighbour loss: CuPy on blocks of rows (fastlatent/backends/_snnl_blocked.py);
# no hand-written CUDA kernel yet, and this path has not been run on a GPU by its author ----
def snnl_loss_and_grad(X, labels, temperature, metric, eps, gradient):
    from ._snnl_blocked import snnl_loss_and_grad_blocked

    X = cupy.ascontiguousarray(cupy.asarray(X))
    return snnl_loss_and_grad_blocked(
        X, cupy.asarray(labels), temperature, metric, eps, gradient, xp=cupy
    )


def snnl_loss_and_grad_kernel(X, labels, temperature, metric, eps, gradient):
    """The same op on the hand-written kernels of csrc/cuda/snnl.cu (64 x 64 tiles, two passes,
    one block per 64 rows, no exact re-check of near-zero distances). NEVER RUN by its author (no
    GPU in that session): not the backend's ``snnl_loss_and_grad`` until the gpu-marked test
    ``test_cuda_snnl_kernel_matches_reference`` passes on a GPU; then it can replace it."""
    X = cupy.ascontiguousarray(cupy.asarray(X))
    n, d = X.shape
    dtype = _DTYPE_NAMES[X.dtype]
    T = float(temperature)
    cosine = metric == "cosine"
    X64 = X.astype(cupy.float64)
    if cosine:
        norms = cupy.sqrt((X64 * X64).sum(axis=1))
        safe = cupy.where(norms > 0, norms, 1.0)
        Z = X64 / safe[:, None]
    else:
        Z = X64 - X64.mean(axis=0)
    Z = cupy.ascontiguousarray(Z.astype(X.dtype))
    squared = (Z.astype(cupy.float64) ** 2).sum(axis=1).astype(X.dtype)
    codes = cupy.ascontiguousarray(cupy.asarray(labels, dtype=cupy.int32))
    row_max, same, other = (cupy.empty(n, dtype=cupy.float64) for _ in range(3))
    _cuda.snnl_row_stats(
        Z.data.ptr, squared.data.ptr, codes.data.ptr, n, d, metric, T, dtype,
        row_max.data.ptr, same.data.ptr, other.data.ptr, _stream(),
    )  # fmt: skip
    log_eps = float(np.log(eps)) if eps > 0 else -np.inf
    log_denominator = cupy.logaddexp(log_eps, row_max + cupy.log(same + other))
    pick = cupy.where(same > 0, cupy.exp(row_max + cupy.log(cupy.maximum(same, 1e-300)) - log_denominator), 0.0)
    log_other = cupy.where(other > 0, row_max + cupy.log(cupy.maximum(other, 1e-300)), -cupy.inf)
    one_minus_pick = cupy.exp(cupy.logaddexp(log_eps, log_other) - log_denominator)
    loss = (-cupy.log(eps + pick)).mean()
    if not gradient:
        return loss, None, None
    scale = 1.0 / (n * (eps + pick))
    v = cupy.empty((n, d), dtype=cupy.float64)
    row_sum, s_sum = (cupy.empty(n, dtype=cupy.float64) for _ in range(2))
    _cuda.snnl_gradient_sums(
        Z.data.ptr, squared.data.ptr, codes.data.ptr, n, d, metric, T, dtype,
        log_denominator.data.ptr, pick.data.ptr, one_minus_pick.data.ptr, scale.data.ptr,
        v.data.ptr, row_sum.data.ptr, s_sum.data.ptr, _stream(),
    )  # fmt: skip
    z = Z.astype(cupy.float64)
    if cosine:
        grad = (v - z * (z * v).sum(axis=1)[:, None]) / (T * safe[:, None])
        grad[norms == 0] = 0
    else:
        grad = -(2.0 / T) * (row_sum[:, None] * z - v)
    return loss, grad.astype(X.dtype), np.float64(-float(s_sum.sum()) / T)


# ==== Gaussian mixture ops (issue 11) =============================================================
# CuPy on blocks of rows (fastlatent/backends/_gmm_blocked.py: GEMMs and elementwise operations in
# float64, the NumPy reference's formulas); no hand-written CUDA kernel. NOT RUN ON A GPU by its
# author (no GPU in that session); the same code runs with NumPy in the tests. The k x d x d
# Cholesky factors stay in the estimator, on the host (SciPy).
def _gmm_device_array(A):
    return cupy.ascontiguousarray(cupy.asarray(A))


def gmm_estimate_log_prob(X, means, precisions_cholesky, covariance_type):
    from ._gmm_blocked import gmm_estimate_log_prob_blocked

    return gmm_estimate_log_prob_blocked(
        _gmm_device_array(X), cupy.asarray(means), cupy.asarray(precisions_cholesky), covariance_type, xp=cupy
    )


def gmm_e_step(X, weights, means, precisions_cholesky, covariance_type):
    """(mean log-likelihood as a 0-d float64 CuPy array, log_resp (n, k) CuPy of X's dtype)."""
    from ._gmm_blocked import gmm_e_step_blocked

    return gmm_e_step_blocked(
        _gmm_device_array(X), cupy.asarray(weights), cupy.asarray(means), cupy.asarray(precisions_cholesky),
        covariance_type, xp=cupy,
    )  # fmt: skip


def gmm_m_step(X, resp, reg_covar, covariance_type):
    from ._gmm_blocked import gmm_m_step_blocked

    return gmm_m_step_blocked(
        _gmm_device_array(X), _gmm_device_array(resp), float(reg_covar), covariance_type, xp=cupy
    )
# ==== end of the Gaussian mixture ops ==============================================================


# ---- silhouette: CuPy on blocks of rows (fastlatent/backends/_silhouette_blocked.py) ----------
# No hand-written CUDA kernel: two cuBLAS DGEMMs per block of rows (distances, then the
# per-cluster sums by one-hot matrices) and in-place CuPy element-wise passes. NOT RUN ON A GPU
# by its author (no GPU in that session); the same code is tested with NumPy on the host.
def silhouette_cluster_sums(X, labels, n_clusters, metric):
    """Float64 (n_samples, n_clusters) sums on the host, as the op's contract says; the n x n
    distances never leave the device (only the n x K sums are copied back)."""
    from ._silhouette_blocked import silhouette_cluster_sums_blocked

    X = cupy.asarray(X)
    labels = cupy.asnumpy(labels).astype(np.int64, copy=False)  # n labels: sorted on the host
    sums = silhouette_cluster_sums_blocked(X, labels, n_clusters, metric, xp=cupy)
    return cupy.asnumpy(sums)
# ---- end silhouette ---------------------------------------------------------------------------
