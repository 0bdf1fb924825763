"""Device arrays: CuPy in -> CuPy out with no host round trip, NumPy in with backend="cuda"
-> NumPy out. Needs a GPU (marker ``gpu``); the numerical comparisons of the CUDA backend
against the reference run in test_distance_ops.py through the ``backend`` fixture."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastlatent
from fastlatent import ops
from fastlatent.backends import numpy as reference
from tolerances import BACKEND_VS_REFERENCE, distance_tol

pytestmark = pytest.mark.gpu


@pytest.fixture
def cupy():
    return pytest.importorskip("cupy")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cupy_in_cupy_out(cupy, rng, dtype, metric):
    X = rng.standard_normal((1000, 64)).astype(dtype)
    Y = rng.standard_normal((300, 64)).astype(dtype)
    dX, dY = cupy.asarray(X), cupy.asarray(Y)
    D = ops.pairwise_distances(dX, dY, metric)  # "auto" follows the data to the GPU
    assert isinstance(D, cupy.ndarray) and D.dtype == dtype
    assert_allclose(D.get(), reference.pairwise_distances(X, Y, metric), **distance_tol(BACKEND_VS_REFERENCE, dtype))
    idx, dist = ops.pairwise_distances_argmin_min(dX, dY, metric)
    assert isinstance(idx, cupy.ndarray) and isinstance(dist, cupy.ndarray)
    ref_idx, ref_dist = reference.pairwise_distances_argmin_min(X, Y, metric)
    assert_array_equal(idx.get(), ref_idx)
    kdist, kidx = ops.kneighbors(dX, dY, 10, metric)
    assert isinstance(kidx, cupy.ndarray)
    assert_array_equal(kidx.get(), reference.kneighbors(X, Y, 10, metric)[1])


def test_numpy_in_with_cuda_backend_gives_numpy(rng):
    X = rng.standard_normal((50, 8))
    got = fastlatent.pairwise_distances(X, backend="cuda")
    assert type(got) is np.ndarray
    assert_allclose(got, reference.pairwise_distances(X, X, "euclidean"), atol=1e-12)
    assert_array_equal(np.diag(got), 0)


def test_device_input_is_validated_on_the_device(cupy):
    X = cupy.ones((4, 3))
    X[1, 1] = cupy.nan
    with pytest.raises(ValueError, match="Input X contains NaN."):
        ops.pairwise_distances(X)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        ops.pairwise_distances(cupy.ones(3))


def test_nearest_neighbors_on_the_gpu(cupy, rng):
    X = rng.standard_normal((400, 16)).astype(np.float32)
    nn = fastlatent.NearestNeighbors(n_neighbors=5, metric="cosine").fit(cupy.asarray(X))
    dist, idx = nn.kneighbors(cupy.asarray(X[:20]))
    assert isinstance(idx, cupy.ndarray)
    sk = fastlatent.NearestNeighbors(n_neighbors=5, metric="cosine", backend="numpy").fit(X)
    assert_array_equal(idx.get(), sk.kneighbors(X[:20])[1])


def test_torch_cuda_tensor_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no GPU")
    X = torch.randn(100, 8, device="cuda")
    idx, dist = ops.pairwise_distances_argmin_min(X, X[:10].clone())
    assert isinstance(idx, torch.Tensor) and idx.device.type == "cuda"
    assert_array_equal(idx[:10].cpu().numpy(), np.arange(10))


def test_large_index_arithmetic(cupy):
    # 2^31 elements pass int32: 2^21 rows x 1024 columns of float32 is 8 GiB.
    free, _ = cupy.cuda.runtime.memGetInfo()
    if free < 12 * 2**30:
        pytest.skip("needs 12 GiB of free GPU memory")
    n, d = 2**21 + 3, 1024
    X = cupy.zeros((n, d), dtype=cupy.float32)
    X[-1, -1] = 1.0
    Y = cupy.zeros((2, d), dtype=cupy.float32)
    Y[1, -1] = 1.0
    idx, dist = ops.pairwise_distances_argmin_min(X, Y)
    assert int(idx[-1]) == 1 and float(dist[-1]) == 0.0
    assert int(idx[0]) == 0
