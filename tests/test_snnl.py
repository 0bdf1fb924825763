"""fastlatent.soft_nearest_neighbor_loss and annealed_temperature: the public API and bad input."""

import numpy as np
import pytest

import fastlatent


def test_loss_and_gradient_shapes_and_types(dtype, rng):
    X = rng.normal(size=(30, 4)).astype(dtype)
    y = rng.integers(0, 3, 30)
    loss = fastlatent.soft_nearest_neighbor_loss(X, y)
    assert isinstance(loss, float) and loss > 0
    loss2, grad, grad_t = fastlatent.soft_nearest_neighbor_loss(X, y, return_gradient=True)
    assert loss2 == pytest.approx(loss, rel=1e-12)
    assert grad.shape == X.shape and grad.dtype == dtype and isinstance(grad_t, float)


def test_separated_classes_have_low_loss_entangled_high():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    assert fastlatent.soft_nearest_neighbor_loss(X, [0, 0, 1, 1]) < 1e-6
    assert fastlatent.soft_nearest_neighbor_loss(X, [0, 1, 0, 1]) == pytest.approx(-np.log(1e-5), rel=1e-6)


def test_euclidean_is_squared_euclidean(rng):
    X = rng.normal(size=(12, 3))
    y = rng.integers(0, 2, 12)
    a = fastlatent.soft_nearest_neighbor_loss(X, y, metric="euclidean", backend="numpy")
    b = fastlatent.soft_nearest_neighbor_loss(X, y, metric="sqeuclidean", backend="numpy")
    assert a == b


def test_backends_agree_through_public_api(backend, rng):
    X = rng.normal(size=(25, 3))
    y = rng.integers(0, 2, 25)
    ref = fastlatent.soft_nearest_neighbor_loss(X, y, 0.5, "cosine", backend="numpy")
    assert fastlatent.soft_nearest_neighbor_loss(X, y, 0.5, "cosine", backend=backend) == pytest.approx(ref, rel=1e-10)


def test_input_not_modified(rng):
    X = rng.normal(size=(10, 3))
    X.setflags(write=False)
    y = np.arange(10) % 2
    before = X.copy()
    fastlatent.soft_nearest_neighbor_loss(X, y, metric="cosine", return_gradient=True)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": [0, 1, 0]}, ValueError, "inconsistent numbers of samples"),
        ({"X": np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])}, ValueError, "NaN"),
        ({"X": np.array([[np.inf, 1.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])}, ValueError, "infinity"),
        ({"X": np.arange(4.0)}, ValueError, "Expected 2D array"),
        ({"X": np.zeros((1, 2)), "y": [0]}, ValueError, "minimum of 2"),
        ({"X": np.zeros((0, 2)), "y": []}, ValueError, "0 sample"),
        ({"temperature": 0.0}, ValueError, "temperature must be finite and > 0"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": np.inf}, ValueError, "temperature"),
        ({"temperature": "hot"}, TypeError, "temperature must be a real number"),
        ({"eps": -1e-5}, ValueError, "eps must be finite and >= 0"),
        ({"eps": np.nan}, ValueError, "eps"),
        ({"metric": "manhattan"}, ValueError, "Unknown metric 'manhattan'"),
        ({"y": [0.0, np.nan, 1.0, 1.0]}, ValueError, "y contains NaN"),
        ({"y": [[0, 1], [1, 0], [0, 1], [1, 0]]}, ValueError, "y should be a 1d array"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"X": np.arange(8.0).reshape(4, 2), "y": [0, 1, 0, 1]}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fastlatent.soft_nearest_neighbor_loss(**args)


def test_eps_zero_accepted(rng):
    X = rng.normal(size=(6, 2))
    loss = fastlatent.soft_nearest_neighbor_loss(X, [0, 0, 1, 1, 2, 2], eps=0.0)
    assert np.isfinite(loss)


def test_annealed_temperature():
    assert fastlatent.annealed_temperature(0) == 1.0
    assert fastlatent.annealed_temperature(3) == pytest.approx(4**-0.55)
    assert fastlatent.annealed_temperature(3, base=2.0, exponent=1.0) == pytest.approx(0.5)
    values = [fastlatent.annealed_temperature(e) for e in range(50)]
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="epoch"):
        fastlatent.annealed_temperature(-1)
    with pytest.raises(ValueError, match="base"):
        fastlatent.annealed_temperature(1, base=0.0)
    with pytest.raises(TypeError, match="epoch"):
        fastlatent.annealed_temperature("1")
