"""The ``fastlatent`` command: find how many groups there are and which model fits.

    fastlatent cluster [INPUT] [--model gmm|kmeans|hierarchical] [--k 2:20]
                       [--covariance full,tied,diag,spherical] [--linkage ward] [--threshold T]
                       [--metric euclidean|cosine] [--reduce none|pca|umap] [--dims 16]
                       [--choose elbow|bic|silhouette] [--view pca|tsne|umap]
                       [--backend auto] [--labels FILE] [--out DIR]
    fastlatent backends

INPUT is a .npy, .npz or .csv file of one row per item; without it the command runs on
scikit-learn's digits (1,797 images of 8x8 pixels, 10 known classes). The command writes to
--out: labels.csv (the chosen model's cluster of each row), sweep.csv and sweep.md (one row
per model fitted), report.json (the choice, scores, times, backend) and, with matplotlib
installed, bic.png (k-means: inertia.png), silhouette.png, view.png (a 2-D view coloured by
cluster and by the known classes) and, for --model hierarchical, dendrogram.png. A
hierarchical run builds one tree and cuts it at each K (choosing the largest silhouette) or
at --threshold.

Errors in the input (a missing file, a wrong shape, NaN, text in a numeric column) print one
line and exit with status 2.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

__all__ = ["main"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class InputError(Exception):
    """A problem with what the user gave: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------- input


def _parse_k(text):
    """'40' -> [40]; '2:60' -> 2..60; '2:60:2' -> 2, 4, .., 60 (the end included)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes N or START:STOP[:STEP] integers, got {text!r}") from None
    if len(parts) == 1:
        ks = parts
    elif len(parts) in (2, 3) and (len(parts) == 2 or parts[2] > 0):
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1
        ks = list(range(start, stop + 1, step))
    else:
        raise argparse.ArgumentTypeError(f"--k takes N or START:STOP[:STEP] with STEP > 0, got {text!r}")
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k must give positive numbers of clusters, got {text!r}")
    return ks


def _parse_covariances(text):
    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad or not types:
        raise argparse.ArgumentTypeError(
            f"--covariance takes a comma-separated list of {', '.join(COVARIANCE_TYPES)}; got {text!r}"
        )
    return types


def _read_csv(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise InputError(f"{path}: the file is empty")
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = [x.strip() for x in line.split(",")]
        try:
            rows.append([float(x) for x in fields])
        except ValueError:
            if number == 1:
                continue  # a header
            bad = next(x for x in fields if not _is_float(x))
            raise InputError(f"{path}, line {number}: {bad!r} is not a number") from None
    if not rows:
        raise InputError(f"{path}: no numeric rows")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InputError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    return np.array(rows, dtype=np.float64)


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_input(path):
    """(X, known labels or None, description) from a .npy/.npz/.csv file, or the digits."""
    if path is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y, "scikit-learn digits (1797 x 64, 10 classes)"
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    labels = None
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            X = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if not names:
                    raise InputError(f"{path}: the archive holds no arrays")
                key = next((n for n in ("X", "x", "embeddings", "data") if n in names), names[0])
                X = archive[key]
                label_key = next((n for n in ("y", "labels", "target") if n in names and n != key), None)
                labels = archive[label_key] if label_key else None
        elif suffix == ".csv":
            X = _read_csv(path)
        else:
            raise InputError(f"{path}: unknown file type {suffix!r}; expected .npy, .npz or .csv")
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    if X.dtype.kind not in "biuf":
        raise InputError(f"{path}: expected numbers, found an array of dtype {X.dtype}")
    if X.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array (one row per item), found shape {X.shape}")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise InputError(f"{path}: need at least 2 rows and 1 column, found shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise InputError(f"{path}: row {bad[0]}, column {bad[1]} is {X[tuple(bad)]} (values must be finite)")
    return X, labels, f"{path} ({X.shape[0]} x {X.shape[1]})"


def load_labels(path, n_rows):
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        if path.lower().endswith(".npy"):
            labels = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                labels = np.array([line.strip() for line in f if line.strip()])
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read labels ({exc})") from None
    labels = np.ravel(labels)
    if len(labels) != n_rows:
        raise InputError(f"{path}: {len(labels)} labels for {n_rows} rows")
    return labels


# ---------------------------------------------------------------------------- steps


def reduce(X, method, dims, random_state):
    """The data the models are fit to: X itself, its first principal components, or UMAP."""
    if method == "none" or X.shape[1] <= dims:
        return X, "none" if method == "none" else f"none ({X.shape[1]} columns <= --dims {dims})"
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(dims, random_state=random_state).fit(X)
        kept = float(pca.explained_variance_ratio_.sum())
        return pca.transform(X), f"pca to {dims} dimensions ({kept:.1%} of the variance)"
    try:
        import umap
    except ImportError:
        raise InputError("--reduce umap needs umap-learn: pip install 'fastlatent[umap]'") from None
    return umap.UMAP(n_components=dims, random_state=random_state).fit_transform(X), f"umap to {dims} dimensions"


def _cluster_summary(Z, labels, centres, n_nearest=5):
    """Per cluster: its size and the rows nearest its centre (what users look at next)."""
    from . import ops

    summary = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        centre = centres[c][None, :] if centres is not None else Z[members].mean(axis=0, keepdims=True)
        k = min(n_nearest, len(members))
        _, nearest = ops.kneighbors(centre, np.ascontiguousarray(Z[members]), k, "euclidean")
        summary.append({"cluster": int(c), "size": int(len(members)), "nearest_rows": members[nearest[0]].tolist()})
    return summary


def _plots(out, table, chosen, view, view_name, labels, known, tree=None):
    """The curves (bic.png or inertia.png, silhouette.png), view.png and, for a hierarchical
    model, dendrogram.png; returns the files written and the reason for none, if any."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return [], "matplotlib is not installed (pip install 'fastlatent[cli]'): no plots"
    written = []
    groups = sorted({row["covariance_type"] for row in table}) or [""]
    curves = {
        "gmm": [("bic", "BIC (lower is better; K at the elbow)")],
        "kmeans": [("inertia", "inertia (K at the elbow)")],
        "hierarchical": [],
    }[chosen["model"]]
    if len(table) > 1:
        curves.append(("silhouette", "silhouette (higher is better)"))
    for column, title in curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for group in groups:
            rows = [r for r in table if r["covariance_type"] == group]
            ax.plot([r["n_clusters"] for r in rows], [r[column] for r in rows], "o-", ms=3, label=group or chosen["model"])
        ax.axvline(chosen["n_clusters"], color="grey", ls="--", lw=1, label=f"chosen K={chosen['n_clusters']}")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("number of clusters K")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, f"{column}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    panels = [("chosen model's clusters", labels)] + ([("known classes", known)] if known is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (title, colour) in zip(axes[0], panels):
        _, codes = np.unique(colour, return_inverse=True)
        ax.scatter(view[:, 0], view[:, 1], c=codes, cmap="tab20", s=4, linewidths=0)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"2-D {view_name} view")
    fig.tight_layout()
    path = os.path.join(out, "view.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    if tree is not None:
        from scipy.cluster.hierarchy import dendrogram

        fig, ax = plt.subplots(figsize=(8, 4.5))
        dendrogram(tree, truncate_mode="lastp", p=min(40, len(tree) + 1), ax=ax, no_labels=True,
                   color_threshold=tree[-chosen["n_clusters"] + 1, 2] if chosen["n_clusters"] > 1 else 0)
        ax.set_title(f"top of the tree ({chosen['covariance_type']} linkage), K={chosen['n_clusters']} coloured")
        ax.set_ylabel("merge height")
        fig.tight_layout()
        path = os.path.join(out, "dendrogram.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written, None


def _scipy_linkage(model):
    """SciPy's linkage matrix of a fitted AgglomerativeClustering (for dendrogram)."""
    n = model.n_leaves_
    sizes = np.ones(2 * n - 1)
    for step, (a, b) in enumerate(model.children_):
        sizes[n + step] = sizes[a] + sizes[b]
    pairs = np.sort(model.children_, axis=1).astype(np.float64)
    return np.column_stack([pairs, model.distances_, sizes[n:]])


# ---------------------------------------------------------------------------- commands


def cluster(args):
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from . import __version__, selection
    from .metrics import clustering_accuracy
    from .ops import select_backend
    from .views import embed_2d

    if args.model == "hierarchical" and args.linkage == "ward" and args.metric != "euclidean":
        raise InputError("--linkage ward needs --metric euclidean")
    if args.choose == "bic" and args.model != "gmm":
        raise InputError("--choose bic needs --model gmm (the other models have no likelihood)")
    times = {}
    start = t0 = time.perf_counter()
    X, known, described = load_input(args.input)
    if args.labels:
        known = load_labels(args.labels, X.shape[0])
    times["load"] = time.perf_counter() - t0
    if max(args.k) >= X.shape[0] and not (args.model == "hierarchical" and args.threshold is not None):
        raise InputError(f"--k goes up to {max(args.k)}, but the input has only {X.shape[0]} rows")
    try:
        backend_name = select_backend(args.backend, op="kmeans_update")[0]
    except (ValueError, ImportError) as exc:
        raise InputError(str(exc)) from None

    t0 = time.perf_counter()
    Z, reduced = reduce(np.asarray(X, dtype=np.float64), args.reduce, args.dims, args.seed)
    times["reduce"] = time.perf_counter() - t0
    print(f"fastlatent cluster: {described}; reduce: {reduced}; backend: {backend_name}", file=sys.stderr)

    t0 = time.perf_counter()
    common = dict(
        silhouette_sample_size=args.silhouette_sample if Z.shape[0] > args.silhouette_sample else None,
        random_state=args.seed,
        backend=args.backend,
        progress=None,
    )
    if args.model == "gmm":
        result = selection.sweep_gaussian_mixture(
            Z, args.k, args.covariance, silhouette_metric=args.metric, criterion=args.choose, **common
        )
        labels = result.model.predict(Z)
        centres = result.model.means_
    elif args.model == "kmeans":
        result = selection.sweep_kmeans(Z, args.k, metric=args.metric, criterion=args.choose, **common)
        labels = result.model.labels_
        centres = result.model.cluster_centers_
    else:
        result = selection.sweep_hierarchical(
            Z, args.k, args.linkage, args.metric, distance_threshold=args.threshold, **common
        )
        labels = result.model.labels_
        centres = None
    times["sweep"] = time.perf_counter() - t0

    os.makedirs(args.out, exist_ok=True)
    np.savetxt(os.path.join(args.out, "labels.csv"), labels, fmt="%d")
    result.table.to_csv(os.path.join(args.out, "sweep.csv"))
    with open(os.path.join(args.out, "sweep.md"), "w", encoding="utf-8") as f:
        f.write(result.table.to_markdown() + "\n")

    scores = None
    if known is not None:
        scores = {
            "adjusted_rand_index": float(adjusted_rand_score(known, labels)),
            "normalized_mutual_info": float(normalized_mutual_info_score(known, labels)),
            "clustering_accuracy": clustering_accuracy(known, labels),
            "n_classes": int(len(np.unique(known))),
        }
    t0 = time.perf_counter()
    try:
        view = embed_2d(Z, args.view, random_state=args.seed)
    except ImportError as exc:
        raise InputError(str(exc)) from None
    tree = _scipy_linkage(result.model) if args.model == "hierarchical" else None
    plots, why_not = _plots(args.out, result.table, result.chosen, view, args.view, labels, known, tree)
    times["plots"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - start

    lowest = {"gmm": "bic", "kmeans": "inertia"}.get(args.model)
    report = {
        "input": described,
        "shape": list(X.shape),
        "reduce": reduced,
        "model": args.model,
        "metric": args.metric,
        "k_swept": args.k,
        "covariance_types": args.covariance if args.model == "gmm" else None,
        "linkage": args.linkage if args.model == "hierarchical" else None,
        "threshold": args.threshold if args.model == "hierarchical" else None,
        "view": args.view,
        "choice_rule": _choice_rule(args),
        "chosen": _jsonable(result.chosen),
        "elbows": result.elbows,
        "best_silhouette": _jsonable(result.best_silhouette),
        "scores_against_labels": scores,
        "clusters": _cluster_summary(Z, np.asarray(labels), centres),
        "times_seconds": times,
        "backend": backend_name,
        "fastlatent_version": __version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "files": ["labels.csv", "sweep.csv", "sweep.md", "report.json"] + [os.path.basename(p) for p in plots],
        "plots_skipped": why_not,
    }
    if lowest:
        report[f"lowest_{lowest}"] = _jsonable(min(result.table, key=lambda r: r[lowest]))
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)

    chosen, best = result.chosen, result.best_silhouette
    line = f"chosen: {args.model} {chosen['covariance_type']} K={chosen['n_clusters']} (silhouette {chosen['silhouette']:.3f})"
    if best is not None:
        line += f"; best silhouette: {best['covariance_type']} K={best['n_clusters']} ({best['silhouette']:.3f})"
    print(line.replace("  ", " "))
    if scores:
        print(
            "against the known labels: ARI {adjusted_rand_index:.3f}, NMI {normalized_mutual_info:.3f}, "
            "clustering accuracy {clustering_accuracy:.3f}".format(**scores)
        )
    if why_not:
        print(why_not, file=sys.stderr)
    print(f"wrote {args.out}/: " + ", ".join(report["files"]) + f" in {times['total']:.1f} s")
    return 0


def _choice_rule(args):
    if args.model == "hierarchical":
        return "the distance threshold" if args.threshold is not None else "the largest silhouette"
    if args.choose == "elbow":
        return "K at the elbow (largest second difference) of each curve " + (
            "of BIC; among covariance types the elbow model with the lowest BIC" if args.model == "gmm" else "of inertia"
        )
    return {"bic": "the lowest BIC", "silhouette": "the largest silhouette"}[args.choose]


def _jsonable(row):
    if row is None:
        return None
    clean = {}
    for key, value in row.items():
        value = value.item() if hasattr(value, "item") else value
        clean[key] = None if isinstance(value, float) and value != value else value
    return clean


def backends(args):
    from .backends import show_backends

    show_backends()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastlatent", description="Fast clustering of embedding vectors.")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser(
        "cluster",
        help="sweep K (and covariance types), choose a model, write labels, a report and plots",
        description="Fit models for a range of K, choose K at the elbow of the BIC (or inertia) "
        "curve, report the silhouette beside it, and write labels, report.json and plots.",
    )
    c.add_argument("input", nargs="?", help=".npy, .npz or .csv (one row per item); default: scikit-learn's digits")
    c.add_argument("--model", choices=["gmm", "kmeans", "hierarchical"], default="gmm",
                   help="Gaussian mixtures (default), k-means, or agglomerative clustering (one tree, "
                   "cut at each K or at --threshold)")
    c.add_argument("--linkage", choices=["ward", "average", "complete", "single"], default="ward",
                   help="linkage of --model hierarchical (default ward)")
    c.add_argument("--threshold", type=float, help="--model hierarchical: cut where merges pass this distance")
    c.add_argument("--k", type=_parse_k, default=list(range(2, 21)), help="N or START:STOP[:STEP] (default 2:20)")
    c.add_argument(
        "--covariance", type=_parse_covariances, default=list(COVARIANCE_TYPES), help="comma-separated (default: all four)"
    )
    c.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean",
                   help="k-means metric (cosine: spherical k-means) and the silhouette's")
    c.add_argument("--reduce", choices=["none", "pca", "umap"], default="pca", help="reduce before clustering (default pca)")
    c.add_argument("--dims", type=int, default=16, help="dimensions kept by --reduce (default 16)")
    c.add_argument("--choose", choices=["elbow", "bic", "silhouette"], default="elbow",
                   help="how the model is chosen: K at the elbow of the BIC (k-means: inertia) curve "
                   "(default), the lowest BIC (gmm only), or the largest silhouette")
    c.add_argument("--view", choices=["pca", "tsne", "umap"], default="pca",
                   help="the 2-D view of view.png (umap needs umap-learn)")
    c.add_argument("--backend", default="auto", help="auto, cuda, cpu, numba or numpy")
    c.add_argument("--labels", help="known labels, one per line (.txt/.csv) or .npy: adds ARI, NMI and accuracy")
    c.add_argument("--out", default="fastlatent-out", help="output directory (default fastlatent-out)")
    c.add_argument("--seed", type=int, default=0, help="random seed of every fit (default 0)")
    c.add_argument("--silhouette-sample", type=int, default=20000,
                   help="silhouette on a random sample of this many rows when there are more (default 20000)")
    c.set_defaults(run=cluster)
    b = commands.add_parser("backends", help="print which backends can run here")
    b.set_defaults(run=backends)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as exc:
        print(f"fastlatent: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 -- one line for the user; FASTLATENT_DEBUG=1 for the traceback
        if os.environ.get("FASTLATENT_DEBUG"):
            raise
        print(f"fastlatent: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
