"""precision="tf32" / "bf16": nearest rows screened in reduced precision, proven equal to exact.

Without a GPU, the tensor-core product is emulated on the host (inputs rounded to the format,
float32 products and sums: ``emulated_tensor_core_gemm``), which exercises the whole proof of
``fastlatent.ops._reduced_precision.nearest``. The gpu-marked tests run the real thing.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs

import fastlatent
from fastlatent import ops
from fastlatent.backends import numpy as reference
from fastlatent.ops import _reduced_precision as rp
from tolerances import BACKEND_VS_REFERENCE, distance_tol

METRICS = ["sqeuclidean", "euclidean", "cosine"]
# (precision, rounding of the emulated inputs): TF32 truncated is the worst a tensor core does.
FORMATS = [("tf32", "truncate"), ("tf32", "nearest"), ("bf16", "nearest")]


def near_ties(rng, dtype, n=1500, n_y=24, d=48):
    """Rows almost equidistant from two rows of Y (relative gaps 1e-7 to 1e-1), midpoints,
    copies of rows of Y, ordinary points, and rows nearest to a row of Y that appears twice
    (true ties); all far from the origin."""
    Y = rng.standard_normal((n_y, d)) + 3.0
    Y[1] = Y[0]
    a = rng.integers(0, n_y, n)
    b = (a + 1 + rng.integers(0, n_y - 1, n)) % n_y
    scale = 10.0 ** rng.uniform(-7, -1, n)
    X = (Y[a] + Y[b]) / 2 + scale[:, None] * rng.standard_normal((n, d))
    X[:50] = (Y[a[:50]] + Y[b[:50]]) / 2
    X[50:80] = Y[a[50:80]]
    X[80:200] = rng.standard_normal((120, d)) * 2 + 3.0
    X[200:220] = Y[0] + 1e-3 * rng.standard_normal((20, d))
    return X.astype(dtype), Y.astype(dtype)


def exact_for(X, Y, k, metric):
    return lambda rows: reference.kneighbors(X[rows], Y, k, metric)


@pytest.mark.parametrize("precision, mode", FORMATS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 3, 24])
def test_nearest_equals_exact_on_near_ties(rng, dtype, precision, mode, metric, k):
    X, Y = near_ties(rng, dtype)
    gemm = rp.emulated_tensor_core_gemm(precision, mode)
    distances, indices, redone = rp.nearest(
        X, Y, k, metric, precision, gemm, exact_for(X, Y, k, metric), block_elements=1 << 13
    )
    expected_distances, expected_indices = reference.kneighbors(X, Y, k, metric)
    assert_array_equal(indices, expected_indices)
    assert distances.dtype == dtype
    assert_allclose(distances, expected_distances, **distance_tol(BACKEND_VS_REFERENCE, dtype))
    assert redone > 0  # the true ties went to the exact kernel
    if k < len(Y):  # (with k = n_y every row lists the tied pair)
        assert redone < len(X) / 2


@pytest.mark.parametrize("precision, mode", FORMATS)
def test_low_precision_alone_gets_these_rows_wrong(rng, precision, mode):
    """The data above defeats a plain reduced-precision argmin, and `nearest` with a zero error
    bound: the proof is what makes the answers exact."""
    X, Y = near_ties(rng, np.float32)
    gemm = rp.emulated_tensor_core_gemm(precision, mode)
    _, expected = reference.pairwise_distances_argmin_min(X, Y, "sqeuclidean")
    keys = (Y.astype(np.float64) ** 2).sum(axis=1) - 2.0 * gemm(X, Y)
    assert (keys.argmin(axis=1) != expected).sum() > 20

    original = rp.relative_product_error
    try:
        rp.relative_product_error = lambda precision, n_features: 0.0
        _, indices, _ = rp.nearest(X, Y, 1, "sqeuclidean", precision, gemm, exact_for(X, Y, 1, "sqeuclidean"))
    finally:
        rp.relative_product_error = original
    assert (indices[:, 0] != expected).sum() > 0


@pytest.mark.parametrize("precision, mode", FORMATS)
@pytest.mark.parametrize("d", [1, 7, 64, 768])
def test_product_error_bound_holds(rng, precision, mode, d):
    """|x^.y^ - x.y| <= rho |x| |y| for the emulated format, on rows of mixed magnitudes (within
    float32's normal range: underflow has its own term in `nearest`)."""
    X = rng.standard_normal((300, d)) * 10.0 ** rng.uniform(-12, 12, (300, 1))
    X[:, : d // 2] *= 1e-3
    Y = rng.standard_normal((40, d)) * 10.0 ** rng.uniform(-12, 12, (40, 1))
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    low = rp.emulated_tensor_core_gemm(precision, mode)(X32, Y32).astype(np.float64)
    exact = X32.astype(np.float64) @ Y32.astype(np.float64).T
    bound = rp.relative_product_error(precision, d) * np.outer(
        np.linalg.norm(X32.astype(np.float64), axis=1), np.linalg.norm(Y32.astype(np.float64), axis=1)
    )
    assert (np.abs(low - exact) <= bound).all()
    assert (np.abs(low - exact) > bound / 1000).any()  # and the bound is not absurdly loose


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_few_rows_need_the_exact_kernel_on_clustered_data(precision):
    X, _ = make_blobs(6000, 64, centers=40, cluster_std=2.0, random_state=0)
    X = X.astype(np.float32)
    Y = X[np.random.default_rng(1).choice(len(X), 256, replace=False)]
    gemm = rp.emulated_tensor_core_gemm(precision)
    _, indices, redone = rp.nearest(X, Y, 1, "sqeuclidean", precision, gemm, exact_for(X, Y, 1, "sqeuclidean"))
    assert_array_equal(indices[:, 0], reference.pairwise_distances_argmin_min(X, Y, "sqeuclidean")[0])
    assert redone <= 0.01 * len(X)


@pytest.mark.parametrize("metric", METRICS)
def test_odd_shapes(rng, dtype, metric):
    gemm = rp.emulated_tensor_core_gemm("bf16")
    for n_x, n_y, d, k in [(1, 1, 1, 1), (5, 1, 3, 1), (1, 9, 1, 4), (7, 3, 2, 3)]:
        X = rng.standard_normal((n_x, d)).astype(dtype)
        Y = rng.standard_normal((n_y, d)).astype(dtype)
        distances, indices, _ = rp.nearest(X, Y, k, metric, "bf16", gemm, exact_for(X, Y, k, metric))
        expected_distances, expected_indices = reference.kneighbors(X, Y, k, metric)
        assert_array_equal(indices, expected_indices)
        assert_allclose(distances, expected_distances, **distance_tol(BACKEND_VS_REFERENCE, dtype))


def test_zero_rows_with_cosine_go_to_the_exact_kernel(rng):
    X = rng.standard_normal((20, 5))
    X[3] = 0
    Y = rng.standard_normal((6, 5))
    Y[2] = 0
    gemm = rp.emulated_tensor_core_gemm("tf32")
    distances, indices, _ = rp.nearest(X, Y, 2, "cosine", "tf32", gemm, exact_for(X, Y, 2, "cosine"))
    expected_distances, expected_indices = reference.kneighbors(X, Y, 2, "cosine")
    assert_array_equal(indices, expected_indices)
    assert_allclose(distances, expected_distances, rtol=1e-12, atol=1e-12)


def test_huge_norms_are_never_proven_from_float32_products():
    X = np.array([[1e60, 0.0], [1.0, 2.0]])
    Y = np.array([[1e60, 1.0], [0.0, 1.0]])

    def exact(rows):
        return reference.kneighbors(X[rows], Y, 1, "sqeuclidean")

    with np.errstate(over="ignore", invalid="ignore"):  # the float32 products overflow
        _, indices, redone = rp.nearest(X, Y, 1, "sqeuclidean", "tf32", rp.emulated_tensor_core_gemm("tf32"), exact)
    assert redone == 2  # every norm (shifted by Y's mean) is past 2^50
    assert_array_equal(indices[:, 0], reference.pairwise_distances_argmin_min(X, Y, "sqeuclidean")[0])


# ---- the public parameter ----------------------------------------------------------------------


def test_host_backends_warn_and_compute_exactly(rng):
    X, Y = near_ties(rng, np.float32, n=300)
    exact = ops.pairwise_distances_argmin_min(X, Y)
    with pytest.warns(UserWarning, match="tensor cores"):
        got = ops.pairwise_distances_argmin_min(X, Y, precision="tf32")
    assert_array_equal(got[0], exact[0])
    assert_array_equal(got[1], exact[1])
    with pytest.warns(UserWarning, match="tensor cores"):
        got = fastlatent.pairwise_distances_argmin_min(X, Y, precision="bf16")
    assert_array_equal(got[0], exact[0])
    with pytest.warns(UserWarning, match="tensor cores"):
        distances, indices = ops.kneighbors(X, Y, 4, "cosine", precision="bf16")
    assert_array_equal(indices, ops.kneighbors(X, Y, 4, "cosine")[1])


def test_invalid_precision_is_refused(rng):
    X = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="precision must be one of 'exact', 'tf32', 'bf16'; got 'fp8'"):
        ops.pairwise_distances_argmin_min(X, X, precision="fp8")
    with pytest.raises(ValueError, match="'manhattan' has none"):
        ops.kneighbors(X, X, 2, "manhattan", precision="tf32")
    with pytest.raises(ValueError, match="precision must be one of"):
        ops.kmeans_assign(X, X[:2], precision="half")


def test_kmeans_with_reduced_precision_on_the_host_warns_once_and_fits_exactly(rng):
    X, _ = make_blobs(600, 8, centers=5, random_state=0)
    exact = fastlatent.KMeans(5, random_state=0).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reduced = fastlatent.KMeans(5, random_state=0, precision="bf16").fit(X)
    assert sum("tensor cores" in str(w.message) for w in caught) == 1
    assert_array_equal(reduced.labels_, exact.labels_)
    assert reduced.inertia_ == exact.inertia_
    with pytest.raises(ValueError, match="precision"):
        fastlatent.KMeans(5, precision="fp16").fit(X)


def test_nearest_neighbors_precision_parameter(rng):
    X = rng.standard_normal((200, 6))
    exact = fastlatent.NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X[:20])
    with pytest.warns(UserWarning, match="tensor cores"):
        reduced = fastlatent.NearestNeighbors(n_neighbors=3, precision="tf32").fit(X).kneighbors(X[:20])
    assert_array_equal(reduced[1], exact[1])


# ---- on the GPU ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("d", [1, 64, 768])
def test_cuda_tensor_core_product_is_within_the_bound(rng, precision, d):
    """The bound's assumptions (input rounding, float32 accumulation) hold on the hardware."""
    import cupy

    from fastlatent.backends import cuda

    X = (rng.standard_normal((512, d)) * 10.0 ** rng.uniform(-10, 10, (512, 1))).astype(np.float32)
    Y = (rng.standard_normal((300, d)) * 10.0 ** rng.uniform(-10, 10, (300, 1))).astype(np.float32)
    low = cuda.tensor_core_gemm(cupy.asarray(X), cupy.asarray(Y), precision).get().astype(np.float64)
    exact = X.astype(np.float64) @ Y.astype(np.float64).T
    bound = rp.relative_product_error(precision, d) * np.outer(
        np.linalg.norm(X.astype(np.float64), axis=1), np.linalg.norm(Y.astype(np.float64), axis=1)
    )
    assert (np.abs(low - exact) <= bound).all()
    if precision == "bf16":  # really reduced: float32 products would be far more accurate
        assert (np.abs(low - exact) > bound / 100).any()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_reduced_precision_equals_exact(rng, dtype, precision, metric):
    import cupy

    X, Y = near_ties(rng, dtype)
    Xd, Yd = cupy.asarray(X), cupy.asarray(Y)
    indices, _ = ops.pairwise_distances_argmin_min(Xd, Yd, metric, precision=precision)
    exact_indices, _ = ops.pairwise_distances_argmin_min(Xd, Yd, metric)
    assert_array_equal(indices.get(), exact_indices.get())
    _, neighbours = ops.kneighbors(Xd, Yd, 3, metric, precision=precision)
    assert_array_equal(neighbours.get(), ops.kneighbors(Xd, Yd, 3, metric)[1].get())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cuda_kmeans_reduced_precision_equals_exact(precision):
    import cupy

    X, _ = make_blobs(20000, 32, centers=30, cluster_std=3.0, random_state=0)
    X = cupy.asarray(X.astype(np.float32))
    init = X[:30].copy()
    exact = fastlatent.KMeans(30, init=init, n_init=1, max_iter=20).fit(X)
    reduced = fastlatent.KMeans(30, init=init, n_init=1, max_iter=20, precision=precision).fit(X)
    assert_array_equal(reduced.labels_.get(), exact.labels_.get())
    assert reduced.n_iter_ == exact.n_iter_
