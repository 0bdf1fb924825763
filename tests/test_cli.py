"""The ``fastlatent`` command end to end in a temporary directory: files, report, exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastlatent.cli import main


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], dtype=float)
    labels = np.repeat(np.arange(3), 40)
    X = centres[labels] + rng.normal(size=(120, 4))
    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "X.npy", X)
    np.savetxt(folder / "labels.txt", labels, fmt="%d")
    np.savez(folder / "Xy.npz", X=X, y=labels)
    with open(folder / "X.csv", "w") as f:
        f.write("a,b,c,d\n")
        np.savetxt(f, X, delimiter=",")
    return folder, X, labels


def _report(out):
    with open(out / "report.json") as f:
        return json.load(f)


def test_gmm_run_writes_everything(blobs, tmp_path, capsys):
    folder, X, labels = blobs
    out = tmp_path / "out"
    code = main(["cluster", str(folder / "X.npy"), "--k", "2:5", "--covariance", "diag,full",
                 "--labels", str(folder / "labels.txt"), "--out", str(out), "--reduce", "none"])
    assert code == 0
    for name in ["labels.csv", "sweep.csv", "sweep.md", "report.json", "bic.png", "silhouette.png", "view.png"]:
        assert (out / name).stat().st_size > 0, name
    report = _report(out)
    assert report["chosen"]["n_clusters"] == 3 and report["chosen"]["model"] == "gmm"
    assert report["scores_against_labels"]["clustering_accuracy"] == 1.0
    assert report["scores_against_labels"]["adjusted_rand_index"] == pytest.approx(1.0)
    assert report["shape"] == [120, 4] and report["k_swept"] == [2, 3, 4, 5]
    assert set(report["elbows"]) == {"diag", "full"}
    assert sum(c["size"] for c in report["clusters"]) == 120
    assert all(len(c["nearest_rows"]) == 5 for c in report["clusters"])
    written = np.loadtxt(out / "labels.csv", dtype=int)
    assert written.shape == (120,) and len(np.unique(written)) == 3
    assert len(open(out / "sweep.csv").read().splitlines()) == 1 + 8
    assert "chosen: gmm" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["Xy.npz", "X.csv"])
def test_kmeans_run_on_npz_and_csv(blobs, tmp_path, name):
    folder, _, _ = blobs
    out = tmp_path / "out"
    assert main(["cluster", str(folder / name), "--model", "kmeans", "--k", "2:5", "--metric", "cosine",
                 "--out", str(out)]) == 0
    report = _report(out)
    assert report["model"] == "kmeans" and report["metric"] == "cosine"
    assert report["shape"] == [120, 4]
    # The npz carries its labels ("y"), the csv none.
    assert (report["scores_against_labels"] is not None) == (name == "Xy.npz")


def _bad(tmp_path, capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize(
    "write, message",
    [
        (None, "no such file"),
        (lambda p: np.save(p, np.arange(5.0)), "expected a 2-D array"),
        (lambda p: np.save(p, np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]])), "values must be finite"),
        (lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), "expected numbers"),
        (lambda p: np.save(p, np.ones((1, 3))), "need at least 2 rows"),
    ],
)
def test_bad_npy_input(tmp_path, capsys, write, message):
    path = tmp_path / "bad.npy"
    if write:
        write(path)
    code, err = _bad(tmp_path, capsys, ["cluster", str(path), "--k", "2", "--out", str(tmp_path / "o")])
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fastlatent: error:") and message in err[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2\n3,x\n5,6\n", "line 2: 'x' is not a number"),
        ("1,2\n3\n", "different numbers of columns"),
        ("", "the file is empty"),
    ],
)
def test_bad_csv_input(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, err = _bad(tmp_path, capsys, ["cluster", str(path), "--k", "2", "--out", str(tmp_path / "o")])
    assert code == 2 and len(err) == 1 and message in err[0]


def test_bad_arguments(blobs, tmp_path, capsys):
    folder, _, _ = blobs
    code, err = _bad(tmp_path, capsys, ["cluster", str(folder / "X.npy"), "--k", "2:500"])
    assert code == 2 and "only 120 rows" in err[0]
    code, err = _bad(tmp_path, capsys, ["cluster", str(folder / "X.npy"), "--backend", "tpu"])
    assert code == 2 and "Unknown backend 'tpu'" in err[0]
    code, err = _bad(tmp_path, capsys, ["cluster", str(folder / "X.npy"), "--labels", str(folder / "X.csv")])
    assert code == 2 and "121 labels for 120 rows" in err[0]
    code, err = _bad(tmp_path, capsys, ["cluster", str(folder / "X.npy"), "--model", "hierarchical",
                                        "--metric", "cosine"])
    assert code == 2 and "--linkage ward needs --metric euclidean" in err[0]
    path = tmp_path / "data.txt"
    path.write_text("1 2\n")
    code, err = _bad(tmp_path, capsys, ["cluster", str(path)])
    assert code == 2 and "unknown file type" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "--k", "2:x"])
    assert exit_info.value.code == 2


def test_hierarchical_run(blobs, tmp_path):
    folder, _, _ = blobs
    out = tmp_path / "out"
    assert main(["cluster", str(folder / "Xy.npz"), "--model", "hierarchical", "--k", "2:5",
                 "--linkage", "average", "--view", "tsne", "--out", str(out)]) == 0
    report = _report(out)
    assert report["model"] == "hierarchical" and report["linkage"] == "average" and report["view"] == "tsne"
    assert report["chosen"]["n_clusters"] == 3 and report["scores_against_labels"]["clustering_accuracy"] == 1.0
    assert report["choice_rule"] == "the largest silhouette"
    for name in ["dendrogram.png", "silhouette.png", "view.png"]:
        assert (out / name).stat().st_size > 0
    out2 = tmp_path / "threshold"
    assert main(["cluster", str(folder / "X.npy"), "--model", "hierarchical", "--threshold", "1e9",
                 "--out", str(out2)]) == 0
    assert _report(out2)["chosen"]["n_clusters"] == 1


def test_backends_command(capsys):
    assert main(["backends"]) == 0
    assert "numpy" in capsys.readouterr().out


def test_module_entry_point_on_the_shipped_digits(tmp_path):
    """``python -m fastlatent cluster`` with no input: scikit-learn's digits and their classes."""
    out = tmp_path / "digits"
    run = subprocess.run(
        [sys.executable, "-m", "fastlatent", "cluster", "--k", "9:11", "--covariance", "tied", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "FASTLATENT_DEBUG": ""},
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    report = _report(out)
    assert report["shape"] == [1797, 64] and report["scores_against_labels"]["n_classes"] == 10
    assert report["scores_against_labels"]["clustering_accuracy"] > 0.5


def test_umap_missing_is_one_line(blobs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    try:
        import umap  # noqa: F401
    except ImportError:
        folder, _, _ = blobs
        code = main(["cluster", str(folder / "X.npy"), "--reduce", "umap", "--dims", "2", "--k", "2",
                     "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith("fastlatent: error:") and "umap-learn" in err[-1]
    else:
        pytest.skip("umap-learn is installed")
