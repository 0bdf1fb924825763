"""fastlatent.torch: the autograd Function and nn.Module against torch autograd (skipped without
torch)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
fltorch = pytest.importorskip("fastlatent.torch")

from tolerances import SNNL_REFERENCE_VS_TORCH_RTOL  # noqa: E402


def torch_reference(X, y, T, metric, eps=1e-5):
    """The published B x B formula in torch (diagonal removed by a mask)."""
    if metric == "cosine":
        U = torch.nn.functional.normalize(X, dim=1)
        D = 1 - U @ U.T
    else:
        D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    same = (y[:, None] == y[None, :]).to(X.dtype)
    W = torch.exp(-D / T) * (1 - torch.eye(len(X), dtype=X.dtype))
    pick = W / (eps + W.sum(1, keepdim=True))
    return torch.mean(-torch.log(eps + (pick * same).sum(1)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("torch_dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_function_matches_torch_autograd(metric, torch_dtype):
    gen = torch.Generator().manual_seed(0)
    X0 = torch.randn(40, 6, generator=gen, dtype=torch_dtype)
    y = torch.randint(0, 3, (40,), generator=gen)
    X1 = X0.clone().requires_grad_(True)
    T1 = torch.tensor(0.7, dtype=torch_dtype, requires_grad=True)
    loss = fltorch.soft_nearest_neighbor_loss(X1, y, T1, metric)
    loss.backward()
    X2 = X0.clone().requires_grad_(True)
    T2 = torch.tensor(0.7, dtype=torch_dtype, requires_grad=True)
    expected = torch_reference(X2, y, T2, "cosine" if metric == "cosine" else "sqeuclidean")
    expected.backward()
    rtol = SNNL_REFERENCE_VS_TORCH_RTOL[np.float32 if torch_dtype == torch.float32 else np.float64]
    assert loss.dtype == torch_dtype
    torch.testing.assert_close(loss, expected, rtol=rtol, atol=0)
    scale = X2.grad.abs().max().item()
    torch.testing.assert_close(X1.grad, X2.grad, rtol=rtol, atol=rtol * scale)
    torch.testing.assert_close(T1.grad, T2.grad, rtol=rtol, atol=rtol * abs(T2.grad.item()))


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    T = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    for metric in ("euclidean", "cosine"):
        assert torch.autograd.gradcheck(
            lambda X, T: fltorch.soft_nearest_neighbor_loss(X, y, T, metric), (X, T), eps=1e-6, atol=1e-7
        )


def test_module_trains_and_flattens_hidden_layers():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(60, 2, 3, generator=gen)  # (B, ...) activations are flattened to (B, 6)
    y = torch.randint(0, 2, (60,), generator=gen)
    layer = torch.nn.Linear(3, 3)
    criterion = fltorch.SoftNearestNeighborLoss(temperature=1.0, metric="cosine")
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = criterion(layer(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert "metric='cosine'" in repr(criterion)


def test_learned_temperature_gets_a_gradient():
    criterion = fltorch.SoftNearestNeighborLoss(temperature=2.0, learn_temperature=True)
    X = torch.randn(20, 4, dtype=torch.float32)
    loss = criterion(X, torch.arange(20) % 2)
    loss.backward()
    assert criterion.temperature.grad is not None and torch.isfinite(criterion.temperature.grad)


def test_no_grad_computes_loss_only():
    X = torch.randn(20, 4, requires_grad=True)
    with torch.no_grad():
        loss = fltorch.soft_nearest_neighbor_loss(X, torch.arange(20) % 3)
    assert not loss.requires_grad and torch.isfinite(loss)


def test_cuda_tensor_refused_clearly():
    class FakeCuda:  # only the attributes the check reads
        device = torch.device("meta")

    with pytest.raises(ValueError, match="no CUDA kernel"):
        fltorch._host_view(FakeCuda())


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("torch_dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_streaming_torch_matches_reference(metric, torch_dtype):
    # The path CUDA tensors take, run here on CPU tensors, with blocks of a few rows.
    from fastlatent import ops

    rng = np.random.default_rng(3)
    X = rng.normal(size=(37, 5))
    X[4] = X[2]  # a duplicate
    X[7] = 0.0  # a zero row
    rtol = SNNL_REFERENCE_VS_TORCH_RTOL[np.float32 if torch_dtype == torch.float32 else np.float64]
    for y in (rng.integers(0, 3, 37), np.zeros(37, dtype=int), np.arange(37)):
        for T in (0.1, 1.0, 10.0):
            expected = ops.snnl_loss_and_grad(X, y, T, metric, backend="numpy")
            loss, grad, grad_t = fltorch.streaming_loss_and_grad(
                torch.tensor(X, dtype=torch_dtype), torch.tensor(y), T, metric, block_elements=37 * 5
            )
            assert grad.dtype == torch_dtype
            scale = max(np.abs(expected[1]).max(), 1e-6 / T)
            np.testing.assert_allclose(loss.item(), expected[0], rtol=rtol)
            np.testing.assert_allclose(grad.numpy(), expected[1], rtol=rtol, atol=rtol * scale)
            np.testing.assert_allclose(grad_t, expected[2], rtol=rtol, atol=rtol * max(abs(expected[2]), 1e-6 / T))


def test_backend_torch_through_autograd():
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(12, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    T = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2] * 4)
    assert torch.autograd.gradcheck(
        lambda X, T: fltorch.soft_nearest_neighbor_loss(X, y, T, "cosine", backend="torch"), (X, T),
        eps=1e-6, atol=1e-7,
    )
    with pytest.raises(ValueError, match="temperature"):
        fltorch.streaming_loss_and_grad(X, y, 0.0)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_cuda_tensors_match_cpu(metric):
    # Runs only on a machine with a GPU (never run by the author: no GPU in that session).
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(300, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (300,), generator=gen)
    results = []
    for device in ("cpu", "cuda"):
        Xd = X.to(device).requires_grad_(True)
        Td = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
        loss = fltorch.soft_nearest_neighbor_loss(Xd, y.to(device), Td, metric)
        loss.backward()
        assert loss.device.type == device and Xd.grad.device.type == device
        results.append((loss.item(), Xd.grad.cpu(), Td.grad.item()))
    (l_cpu, g_cpu, t_cpu), (l_gpu, g_gpu, t_gpu) = results
    assert l_gpu == pytest.approx(l_cpu, rel=1e-10)
    torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-8, atol=1e-8 * g_cpu.abs().max().item())
    assert t_gpu == pytest.approx(t_cpu, rel=1e-8)
