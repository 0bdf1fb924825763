"""Disentangled autoencoder codes, then k-means (Agarap & Azcarraga 2020, at a small scale).

An autoencoder on scikit-learn's digits (8x8 images, 10 classes) is trained twice from the same
initial weights: with the reconstruction loss alone, and with the soft nearest neighbour loss
(cosine, annealed temperature 1 / (1 + epoch)^0.55) added on every hidden layer of the encoder.
k-means (fastlatent.KMeans, 10 clusters) then clusters the test images' codes, scored by
clustering accuracy (best one-to-one matching of clusters to classes) on held-out digits.
Needs torch (pip install 'fastlatent[torch]').

    python examples/snnl_autoencoder_digits.py [--epochs 30]
"""

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastlatent


def clustering_accuracy(y, clusters):
    """Fraction of points whose cluster maps to their class under the best one-to-one matching."""
    k = max(y.max(), clusters.max()) + 1
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (clusters, y), 1)
    rows, cols = linear_sum_assignment(-counts)
    return counts[rows, cols].sum() / len(y)


def train(X, y, epochs, factor, seed, batch_size=256, code_size=10):
    import torch

    from fastlatent.torch import SoftNearestNeighborLoss

    torch.manual_seed(seed)
    encoder = torch.nn.ModuleList([torch.nn.Linear(64, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, code_size)])
    decoder = torch.nn.Sequential(torch.nn.Linear(code_size, 64), torch.nn.ReLU(), torch.nn.Linear(64, 128),
                                  torch.nn.ReLU(), torch.nn.Linear(128, 64))
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    snnl = SoftNearestNeighborLoss(metric="cosine")
    Xt, yt = torch.tensor(X), torch.tensor(y)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        snnl.temperature = fastlatent.annealed_temperature(epoch)
        order = torch.randperm(len(Xt), generator=generator)
        for start in range(0, len(Xt), batch_size):
            batch = order[start:start + batch_size]
            h, hidden = Xt[batch], []
            for i, layer in enumerate(encoder):
                h = layer(h)
                if i < len(encoder) - 1:
                    h = torch.relu(h)
                hidden.append(h)
            loss = torch.nn.functional.mse_loss(decoder(h), Xt[batch])
            if factor:
                loss = loss + factor * sum(snnl(a, yt[batch]) for a in hidden)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def encode(Xnew):
        with torch.no_grad():
            h = torch.tensor(Xnew)
            for i, layer in enumerate(encoder):
                h = layer(h)
                if i < len(encoder) - 1:
                    h = torch.relu(h)
            return h.numpy()

    return encode


def main(epochs=30, factor=1.0, seed=0, n_samples=None):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    if n_samples:
        X, y = X[:n_samples], y[:n_samples]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    scores = {}
    for name, weight in (("reconstruction only", 0.0), ("reconstruction + SNNL", factor)):
        start = time.perf_counter()
        encode = train(X_train, y_train, epochs, weight, seed)
        codes = encode(X_test)
        clusters = fastlatent.KMeans(10, n_init=10, random_state=seed).fit_predict(codes)
        scores[name] = clustering_accuracy(y_test, clusters)
        print(f"{name:>22}: k-means clustering accuracy on held-out digits {scores[name]:.3f} "
              f"({time.perf_counter() - start:.1f} s)")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--factor", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.epochs, args.factor, args.seed)
