"""Quick start: nearest neighbours, nearest centres and k-means on scikit-learn's digits.

Run with ``python examples/quickstart.py`` after ``pip install .``. Shows which backends
are available, finds each digit's nearest neighbours by cosine similarity, scores a
leave-one-out 1-NN classifier, assigns every digit to the nearest class centre, clusters the
digits with k-means (euclidean and spherical), and checks every answer against
scikit-learn's.
"""

import time

import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics import pairwise_distances_argmin_min as sk_argmin_min
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

import fastlatent


def main():
    fastlatent.show_backends()
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    print(f"\ndigits: {X.shape[0]} images of {X.shape[1]} pixels, 10 classes")

    start = time.perf_counter()
    nn = fastlatent.NearestNeighbors(n_neighbors=5, metric="cosine").fit(X)
    distances, neighbours = nn.kneighbors()  # each image's 5 nearest others
    took = time.perf_counter() - start
    same_class = (y[neighbours] == y[:, None]).mean()
    loo_accuracy = (y[neighbours[:, 0]] == y).mean()
    print(f"5 nearest neighbours by cosine of every image: {took * 1e3:.1f} ms")
    print(f"  neighbours of the same class: {same_class:.1%}; leave-one-out 1-NN accuracy: {loo_accuracy:.1%}")
    print(f"  the images closest to image 0 (a {y[0]}): {neighbours[0].tolist()} (classes {y[neighbours[0]].tolist()})")

    sk = SkNearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(X).kneighbors()
    assert np.allclose(distances, sk[0], atol=1e-5), "distances differ from scikit-learn"
    print(f"  same neighbours as scikit-learn: {np.mean(neighbours == sk[1]):.2%} (where they differ, the distances are equal: ties)")

    centres = np.stack([X[y == c].mean(axis=0) for c in range(10)])
    labels, dist = fastlatent.pairwise_distances_argmin_min(X, centres)
    sk_labels, sk_dist = sk_argmin_min(X, centres)
    assert np.array_equal(labels, sk_labels) and np.allclose(dist, sk_dist, rtol=1e-5)
    print(f"nearest class centre: {np.mean(labels == y):.1%} of digits are nearest their own class's centre "
          "(same answer as scikit-learn)")

    start = time.perf_counter()
    km = fastlatent.KMeans(n_clusters=10, random_state=0).fit(X)
    took = time.perf_counter() - start
    sk = SkKMeans(n_clusters=10, random_state=0).fit(X)
    agreement = adjusted_rand_score(sk.labels_, km.labels_)  # 1.0: the same partition
    assert agreement > 0.99 and np.isclose(km.inertia_, sk.inertia_, rtol=1e-4), "differs from scikit-learn"
    print(f"k-means, 10 clusters: {took * 1e3:.1f} ms, {km.n_iter_} iterations, inertia {km.inertia_:.4g}; "
          f"adjusted Rand index against the digit labels {adjusted_rand_score(y, km.labels_):.3f} "
          f"(agreement with scikit-learn from the same seed: adjusted Rand index {agreement:.3f})")
    spherical = fastlatent.KMeans(n_clusters=10, metric="cosine", random_state=0).fit(X)
    print(f"spherical k-means (cosine), 10 clusters: adjusted Rand index "
          f"{adjusted_rand_score(y, spherical.labels_):.3f}")


if __name__ == "__main__":
    main()
