"""examples/snnl_toy.py runs, at a tiny size, and separates the classes."""

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "snnl_toy.py"


def load_example():
    spec = importlib.util.spec_from_file_location("snnl_toy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_example_runs_and_separates(tmp_path, capsys):
    toy = load_example()
    output = tmp_path / "toy.png"
    X0, y, results = toy.main(n_points=40, n_steps=15, output=str(output))
    for name, (X, losses, _) in results.items():
        assert X.shape == X0.shape and np.all(np.isfinite(X))
        assert losses[-1] < losses[0], name
    assert toy.same_class_neighbour_rate(results["annealed"][0], y) > toy.same_class_neighbour_rate(X0, y)
    printed = capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in printed
    else:
        assert output.stat().st_size > 0


def test_autoencoder_example_runs_tiny():
    import pytest

    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "snnl_autoencoder_digits", EXAMPLE.parent / "snnl_autoencoder_digits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.clustering_accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == 1.0
    scores = module.main(epochs=1, n_samples=300)
    assert set(scores) == {"reconstruction only", "reconstruction + SNNL"}
    assert all(0.0 < s <= 1.0 for s in scores.values())
