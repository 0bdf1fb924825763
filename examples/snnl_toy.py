"""The soft nearest neighbour loss toy (Frosst, Papernot & Hinton 2019; Agarap & Azcarraga 2020).

300 points drawn from a 2-D Gaussian get random class labels, then move by plain gradient
descent on the soft nearest neighbour loss (the points themselves are the parameters), once
with a fixed temperature and once with the annealed one, T(step) = 1 / (1 + step)^0.55. The
classes separate; the annealed temperature gets there faster. Writes a PNG of the points
before and after and of the two loss curves (skipped, with a message, without matplotlib).

    python examples/snnl_toy.py [--points 300] [--steps 50] [--output snnl_toy.png]
"""

import argparse
import time

import numpy as np

import fastlatent


def descend(X, y, n_steps, learning_rate, temperature_at):
    """Gradient descent on the loss; returns the final points, the loss at every step (at that
    step's temperature) and the first step where 95% of the points have a same-class nearest
    neighbour (None if never)."""
    X = X.copy()
    losses = []
    separated_at = None
    for step in range(n_steps):
        if separated_at is None and same_class_neighbour_rate(X, y) >= 0.95:
            separated_at = step
        loss, grad, _ = fastlatent.soft_nearest_neighbor_loss(
            X, y, temperature=temperature_at(step), return_gradient=True
        )
        losses.append(loss)
        # The loss is a mean over the B points: scale the step by B so each point moves by
        # the gradient of its own term's order of magnitude.
        X -= learning_rate * X.shape[0] * grad
    return X, np.array(losses), separated_at


def same_class_neighbour_rate(X, y):
    """Fraction of points whose nearest other point has the same label (0.5 for random halves)."""
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def plot(X0, y, results, output):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: {output} not written (pip install matplotlib).")
        return False
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    panels = [("before", X0)] + [(f"after, {name} T", r[0]) for name, r in results.items()]
    for ax, (title, X) in zip(axes, panels):
        ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=8)
        ax.set_title(title)
        ax.set_aspect("equal", adjustable="datalim")
    for name, (_, losses, _) in results.items():
        axes[3].plot(losses, label=f"{name} temperature")
    axes[3].set_xlabel("gradient step")
    axes[3].set_ylabel("soft nearest neighbour loss")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(output, dpi=80)
    plt.close(fig)
    print(f"wrote {output}")
    return True


def main(n_points=300, n_steps=50, n_classes=2, learning_rate=0.05, output="snnl_toy.png", seed=0):
    rng = np.random.default_rng(seed)
    X0 = rng.normal(size=(n_points, 2))
    y = rng.integers(0, n_classes, n_points)
    schedules = {
        "fixed": lambda step: 1.0,
        "annealed": lambda step: fastlatent.annealed_temperature(step),
    }
    results = {}
    print(f"{n_points} points, {n_classes} random classes, {n_steps} gradient steps")
    print(f"  start: loss {fastlatent.soft_nearest_neighbor_loss(X0, y):.3f}, "
          f"same-class nearest neighbour {same_class_neighbour_rate(X0, y):.2f}")
    for name, temperature_at in schedules.items():
        start = time.perf_counter()
        X, losses, separated_at = descend(X0, y, n_steps, learning_rate, temperature_at)
        results[name] = (X, losses, separated_at)
        print(f"  {name:>8} T: loss {losses[0]:.3f} -> {losses[-1]:.3f}, same-class nearest "
              f"neighbour {same_class_neighbour_rate(X, y):.2f}, 95% reached at step "
              f"{separated_at} ({time.perf_counter() - start:.2f} s)")
    if output:
        plot(X0, y, results, output)
    return X0, y, results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--output", default="snnl_toy.png")
    args = parser.parse_args()
    main(args.points, args.steps, args.classes, args.learning_rate, args.output)
