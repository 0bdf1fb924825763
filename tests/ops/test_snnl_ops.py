"""ops.snnl_loss_and_grad: every backend against the NumPy reference, the reference against the
torch autograd B x B implementation of the published formula, and finite differences."""

import numpy as np
import pytest

from fastlatent import ops
from tolerances import (
    SNNL_BACKEND_VS_REFERENCE_RTOL,
    SNNL_FINITE_DIFFERENCE_RTOL,
    SNNL_REFERENCE_VS_TORCH_RTOL,
)

METRICS = ["sqeuclidean", "cosine"]


def assert_close(actual, expected, rtol, scale=0.0):
    """allclose with atol = rtol * max(largest |expected|, scale): a gradient entry that is ~0
    (by symmetry, or in a saturated row) is compared on the scale of its terms."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert np.all(np.isfinite(actual))
    scale = max(float(np.abs(expected).max()), scale, 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def assert_same_result(result, expected, rtol, scale=0.0):
    loss, grad, grad_t = result
    assert_close(loss, expected[0], rtol)
    assert_close(grad, expected[1], rtol, scale)
    assert_close(grad_t, expected[2], rtol, scale)


def reference(X, y, T, metric, eps=1e-5, gradient=True):
    return ops.snnl_loss_and_grad(X, y, T, metric, eps, gradient=gradient, backend="numpy")


CASES = [  # (n, d, n_classes, temperature)
    (2, 1, 2, 1.0),
    (2, 3, 1, 0.5),
    (7, 3, 3, 1.0),
    (50, 5, 3, 0.05),
    (97, 17, 4, 2.0),
    (300, 9, 2, 1e-3),
    (129, 8, 5, 100.0),
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n,d,k,T", CASES)
def test_backend_matches_reference(backend, dtype, metric, n, d, k, T, rng):
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, k, n)
    expected = reference(X, y, T, metric)
    result = ops.snnl_loss_and_grad(X, y, T, metric, backend=backend)
    assert result[1].dtype == dtype and result[1].shape == X.shape
    assert_same_result(result, expected, SNNL_BACKEND_VS_REFERENCE_RTOL[dtype])


@pytest.mark.parametrize("metric", METRICS)
def test_loss_only_matches_loss_and_gradient(backend, metric, rng):
    X = rng.normal(size=(60, 4))
    y = rng.integers(0, 3, 60)
    loss, grad, grad_t = ops.snnl_loss_and_grad(X, y, 0.3, metric, gradient=False, backend=backend)
    assert grad is None and grad_t is None
    assert loss == ops.snnl_loss_and_grad(X, y, 0.3, metric, backend=backend)[0]


@pytest.mark.parametrize("metric", METRICS)
def test_edge_cases_match_reference(backend, dtype, metric, rng):
    rtol = SNNL_BACKEND_VS_REFERENCE_RTOL[dtype]
    X = rng.normal(size=(40, 6)).astype(dtype)
    X[5] = X[3]  # duplicate points: distance 0
    X[7] = X[3] * (1 + 1e-6)  # near-duplicate
    X[10] = 0.0  # a zero row (cosine: similarity 0 with everything)
    cases = {
        "singletons": np.arange(40),  # every class has one member: p_i = 0
        "all_same": np.zeros(40, dtype=int),  # p_i = A_i / (eps + A_i)
        "one_singleton": np.r_[np.zeros(39, dtype=int), 1],
        "string_labels": np.array(["a", "b"] * 20),
    }
    # float32 kernels use the expanded form |z_i|^2 + |z_j|^2 - 2 z_i.z_j in float32 (z centred):
    # absolute error ~2^-24 (|z_i|^2 + |z_j|^2) in d, so ~1e-2 in d/T at T=1e-4 for duplicate
    # points (documented limitation); the tiny temperature is checked in float64 only.
    temperatures = (1e-4, 1.0, 1e4) if dtype == np.float64 else (1e-1, 1.0, 1e4)
    for name, y in cases.items():
        for T in temperatures:
            expected = reference(X, y, T, metric)
            result = ops.snnl_loss_and_grad(X, y, T, metric, backend=backend)
            # Gradient terms are up to ~|x| / (B T); near saturation the sum is far smaller.
            assert_same_result(result, expected, rtol, scale=1e-6 / T)


def test_duplicate_points_and_ties(backend, dtype):
    # A square: every point has two neighbours at the same distance (ties), one class each side.
    X = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=dtype)
    y = np.array([0, 0, 1, 1, 0])
    for metric in METRICS:
        for T in (0.01, 1.0):
            assert_same_result(
                ops.snnl_loss_and_grad(X, y, T, metric, backend=backend),
                reference(X, y, T, metric),
                SNNL_BACKEND_VS_REFERENCE_RTOL[dtype],
                scale=1.0 / T,  # the exact gradient is 0 in places, by symmetry
            )


@pytest.mark.parametrize("metric", METRICS)
def test_small_temperature_stays_finite_in_float32(backend, metric, rng):
    # Far apart points and T = 1e-3: exp(-d / T) underflows in float32 (and float64) for whole
    # rows; the shifted sums do not, and the loss is the reference's.
    X = (rng.normal(size=(64, 8)) * 10).astype(np.float32)
    y = rng.integers(0, 2, 64)
    for T in (1e-3, 1e-2):
        loss, grad, grad_t = ops.snnl_loss_and_grad(X, y, T, metric, backend=backend)
        assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.isfinite(grad_t)
        assert_close(loss, reference(X.astype(np.float64), y, T, metric)[0], 1e-3)


def test_saturated_rows_give_minus_log_eps(rng):
    # Points 100 apart, T = 1: exp(-d/T) = 0 in float64 for every pair; each point's class
    # is alone in its row, so the loss is -log(eps) (the published formula gives the same).
    X = np.arange(6, dtype=np.float64)[:, None] * 100
    y = np.array([0, 1, 0, 1, 0, 1])
    loss, grad, _ = reference(X, y, 1.0, "sqeuclidean")
    assert loss == pytest.approx(-np.log(1e-5), rel=1e-12)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("metric", METRICS)
def test_reference_gradient_matches_finite_differences(metric, rng):
    X = rng.normal(size=(9, 3))
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3])
    T = 0.7
    loss, grad, grad_t = reference(X, y, T, metric)
    h = 1e-6
    numeric = np.zeros_like(X)
    for i in range(X.shape[0]):
        for k in range(X.shape[1]):
            Xp, Xm = X.copy(), X.copy()
            Xp[i, k] += h
            Xm[i, k] -= h
            numeric[i, k] = (reference(Xp, y, T, metric)[0] - reference(Xm, y, T, metric)[0]) / (2 * h)
    assert_close(grad, numeric, SNNL_FINITE_DIFFERENCE_RTOL)
    numeric_t = (reference(X, y, T + h, metric)[0] - reference(X, y, T - h, metric)[0]) / (2 * h)
    assert_close(grad_t, numeric_t, SNNL_FINITE_DIFFERENCE_RTOL)


def torch_snnl(X, y, T, metric, eps=1e-5):
    """The published formula (Agarap's pt-snnl / cleverhans) in torch, B x B, with autograd;
    the diagonal is removed by a mask (the references subtract the identity, the same when
    d_ii == 0)."""
    torch = pytest.importorskip("torch")
    Xt = torch.tensor(X, requires_grad=True)
    Tt = torch.tensor(T, dtype=Xt.dtype, requires_grad=True)
    if metric == "cosine":
        U = torch.nn.functional.normalize(Xt, dim=1)
        D = 1 - U @ U.T
    else:
        D = ((Xt[:, None, :] - Xt[None, :, :]) ** 2).sum(-1)
    yt = torch.tensor(y)
    same = (yt[:, None] == yt[None, :]).to(Xt.dtype)
    off_diagonal = 1 - torch.eye(len(X), dtype=Xt.dtype)
    W = torch.exp(-D / Tt) * off_diagonal
    pick = W / (eps + W.sum(1, keepdim=True))
    loss = torch.mean(-torch.log(eps + (pick * same).sum(1)))
    loss.backward()
    return loss.item(), Xt.grad.numpy(), Tt.grad.item()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("T", [0.1, 1.0, 10.0])
def test_reference_matches_torch_autograd(dtype, metric, T, rng):
    X = rng.normal(size=(33, 5)).astype(dtype)
    y = rng.integers(0, 3, 33)
    expected = torch_snnl(X, y, T, metric)
    rtol = SNNL_REFERENCE_VS_TORCH_RTOL[dtype]
    assert_same_result(reference(X, y, T, metric), expected, rtol)
    if dtype == np.float64:
        assert_same_result(reference(X, y, T, metric), expected, 1e-10)


def test_backends_match_torch_autograd(backend, dtype, rng):
    X = rng.normal(size=(70, 6)).astype(dtype)
    y = rng.integers(0, 4, 70)
    for metric in METRICS:
        expected = torch_snnl(X, y, 0.5, metric)
        result = ops.snnl_loss_and_grad(X, y, 0.5, metric, backend=backend)
        assert_same_result(result, expected, SNNL_REFERENCE_VS_TORCH_RTOL[dtype])


def test_result_does_not_depend_on_layout(backend, rng):
    X = rng.normal(size=(20, 12))
    y = rng.integers(0, 2, 20)
    expected = ops.snnl_loss_and_grad(X, y, 0.5, "sqeuclidean", backend=backend)
    for variant in (np.asfortranarray(X), X[:, ::2].repeat(2, axis=1) * 0 + X):
        result = ops.snnl_loss_and_grad(variant, y, 0.5, "sqeuclidean", backend=backend)
        assert_same_result(result, expected, 1e-12)
    strided = np.zeros((20, 24))
    strided[:, ::2] = X
    result = ops.snnl_loss_and_grad(strided[:, ::2], y, 0.5, "sqeuclidean", backend=backend)
    assert_same_result(result, expected, 1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_blocked_array_version_with_numpy(dtype, metric, rng):
    # The CUDA backend runs this code with CuPy; here it runs with NumPy, in blocks of 3 rows.
    from fastlatent.backends._snnl_blocked import snnl_loss_and_grad_blocked

    X = rng.normal(size=(31, 4)).astype(dtype)
    X[3] = X[1]  # duplicate: recomputed exactly
    X[6] = 0.0
    rtol = SNNL_BACKEND_VS_REFERENCE_RTOL[dtype]
    for y in (rng.integers(0, 3, 31), np.zeros(31, dtype=int), np.arange(31)):
        for T in (0.1, 1.0, 100.0):
            labels = np.unique(y, return_inverse=True)[1]
            result = snnl_loss_and_grad_blocked(X, labels, T, metric, 1e-5, True, block_elements=3 * 31)
            assert result[1].dtype == dtype
            assert_same_result(result, reference(X, labels, T, metric), rtol, scale=1e-6 / T)
            loss_only = snnl_loss_and_grad_blocked(X, labels, T, metric, 1e-5, False, block_elements=3 * 31)
            assert loss_only[1] is None and loss_only[0] == pytest.approx(result[0], rel=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_snnl_kernel_matches_reference(dtype, metric, rng):
    # The hand-written kernels of csrc/cuda/snnl.cu (not yet the cuda backend's default).
    # Never run by their author: no GPU in that session.
    from fastlatent.backends import get_backend

    cuda = get_backend("cuda")
    for n, d, k, T in CASES + [(1000, 130, 7, 0.5)]:
        X = rng.normal(size=(n, d)).astype(dtype)
        y = rng.integers(0, k, n)
        labels = np.unique(y, return_inverse=True)[1]
        expected = reference(X, labels, T, metric)
        loss, grad, grad_t = cuda.snnl_loss_and_grad_kernel(X, labels, T, metric, 1e-5, True)
        result = (float(loss), grad.get(), grad_t)
        assert_same_result(result, expected, SNNL_BACKEND_VS_REFERENCE_RTOL[dtype], scale=1e-6 / T)
        loss_only = cuda.snnl_loss_and_grad_kernel(X, labels, T, metric, 1e-5, False)
        assert float(loss_only[0]) == pytest.approx(result[0], rel=1e-12)
