"""fastlatent.dask on a real distributed.LocalCluster (2 worker processes, loopback only):
the same fits as the single-machine estimators from the same initial parameters."""

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_blobs

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastlatent  # noqa: E402
import fastlatent.dask  # noqa: E402
from fastlatent import GaussianMixture, KMeans  # noqa: E402
from fastlatent.dask import _kmeans as dask_kmeans_module  # noqa: E402
from tolerances import (  # noqa: E402
    DASK_OUTPUTS_TOL,
    GMM_LOWER_BOUND_RTOL,
    GMM_PARAMETERS_TOL,
    KMEANS_CENTERS_RTOL,
    KMEANS_INERTIA_RTOL,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
UNEVEN_CHUNKS = (97, 3, 250, 1, 249)  # 600 rows; blocks of 1 and 3 rows among them


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def blobs(dtype, n_samples=600, n_features=5, centers=4, seed=0):
    X, _ = make_blobs(n_samples, n_features=n_features, centers=centers, cluster_std=1.5, random_state=seed)
    return X.astype(dtype)


def as_dask(X, chunks=UNEVEN_CHUNKS):
    return da.from_array(X, chunks=(chunks, X.shape[1]))


def test_workers_run_this_fastlatent(client):
    files = client.run(lambda: __import__("fastlatent").__file__)
    assert set(files.values()) == {fastlatent.__file__}


def test_import_fastlatent_needs_no_dask():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import fastlatent\n"
        "try:\n"
        "    import fastlatent.dask\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr
    assert "pip install 'fastlatent[dask]'" in result.stdout


# ---- KMeans ------------------------------------------------------------------------------------


def assert_same_kmeans(ours, theirs, dtype):
    assert ours.n_iter_ == theirs.n_iter_
    assert isinstance(ours.labels_, da.Array)
    assert_array_equal(ours.labels_.compute(), theirs.labels_)
    assert ours.cluster_centers_.dtype == dtype
    assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=KMEANS_CENTERS_RTOL[dtype], atol=1e-6)
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=KMEANS_INERTIA_RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunks", [UNEVEN_CHUNKS, (600,)], ids=["uneven", "one-chunk"])
def test_kmeans_same_fit_as_single_machine(client, dtype, metric, chunks):
    X = blobs(dtype)
    sample_weight = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    init = X[:6]
    ours = fastlatent.dask.KMeans(6, init=init, metric=metric).fit(as_dask(X, chunks), sample_weight=sample_weight)
    theirs = KMeans(6, init=init, metric=metric).fit(X, sample_weight=sample_weight)
    assert_same_kmeans(ours, theirs, dtype)
    labels = ours.predict(as_dask(X))
    assert isinstance(labels, da.Array) and labels.dtype == np.int32
    assert_array_equal(labels.compute(), theirs.predict(X))
    distances = ours.transform(as_dask(X))
    assert isinstance(distances, da.Array)
    rtol, atol = DASK_OUTPUTS_TOL[dtype]
    assert_allclose(distances.compute(), theirs.transform(X), rtol=rtol, atol=atol)
    assert_allclose(ours.score(as_dask(X)), theirs.score(X), rtol=KMEANS_INERTIA_RTOL[dtype])


def test_kmeans_plusplus_on_small_data_is_the_single_machine_start(client):
    # No more rows than the initialisation sample: no row is drawn, the seeding is the same.
    X = blobs(np.float64)
    ours = fastlatent.dask.KMeans(5, random_state=3).fit(as_dask(X))
    theirs = KMeans(5, random_state=3).fit(X)
    assert_same_kmeans(ours, theirs, np.float64)


def test_kmeans_plusplus_on_a_sample_finds_the_blobs(client):
    X = blobs(np.float64, n_samples=2000, centers=4)
    ours = fastlatent.dask.KMeans(4, random_state=0, init_sample_size=200).fit(as_dask(X, (700, 700, 600)))
    theirs = KMeans(4, random_state=0, n_init=5).fit(X)
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-3)


def test_kmeans_random_init_and_n_init(client):
    X = blobs(np.float64)
    ours = fastlatent.dask.KMeans(4, init="random", n_init=3, random_state=0).fit(as_dask(X))
    theirs = KMeans(4, init="random", n_init=3, random_state=0).fit(X)
    assert ours.n_iter_ >= 1
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-5)


def test_kmeans_empty_cluster_is_relocated_like_single_machine(client):
    X = blobs(np.float64)
    init = np.vstack([X[:3], np.full((1, X.shape[1]), 1e3)])  # the last centre attracts nothing
    ours = fastlatent.dask.KMeans(4, init=init).fit(as_dask(X))
    theirs = KMeans(4, init=init).fit(X)
    assert_same_kmeans(ours, theirs, np.float64)
    assert len(np.unique(ours.labels_.compute())) == 4


def test_kmeans_fewer_distinct_points_than_clusters_warns(client):
    X = np.repeat(np.eye(3), 10, axis=0)
    with pytest.warns(Warning, match=r"Number of distinct clusters \(3\) found smaller than n_clusters \(4\)"):
        fastlatent.dask.KMeans(4, init=np.vstack([np.eye(3), np.eye(3)[:1]])).fit(as_dask(X, (10, 20)))


def test_kmeans_numpy_input_is_wrapped(client):
    X = blobs(np.float64)
    ours = fastlatent.dask.KMeans(4, init=X[:4]).fit(X)
    theirs = KMeans(4, init=X[:4]).fit(X)
    assert_same_kmeans(ours, theirs, np.float64)
    assert isinstance(ours.predict(X), da.Array)
    # Columns split over chunks are gathered into one chunk per block of rows.
    split_columns = da.from_array(X, chunks=(150, 2))
    assert_same_kmeans(fastlatent.dask.KMeans(4, init=X[:4]).fit(split_columns), theirs, np.float64)


def test_kmeans_dask_sample_weight_and_parameters(client):
    X = blobs(np.float64)
    weight = np.random.default_rng(2).uniform(0, 2, len(X))
    ours = fastlatent.dask.KMeans(4, init=X[:4]).fit(as_dask(X), sample_weight=da.from_array(weight, chunks=100))
    theirs = KMeans(4, init=X[:4]).fit(X, sample_weight=weight)
    assert_same_kmeans(ours, theirs, np.float64)
    params = clone(ours).get_params()
    assert params["init_sample_size"] == "auto"
    assert set(KMeans().get_params()) < set(params)


def test_kmeans_unknown_chunk_sizes_and_the_local_threads_scheduler(client):
    import dask

    X = blobs(np.float64)
    keep = np.arange(len(X)) % 7 != 0
    filtered = as_dask(X)[da.from_array(keep, chunks=(UNEVEN_CHUNKS,))]  # row chunks of unknown size
    assert np.isnan(filtered.chunks[0][0])
    theirs = KMeans(4, init=X[keep][:4]).fit(X[keep])
    assert_same_kmeans(fastlatent.dask.KMeans(4, init=X[keep][:4]).fit(filtered), theirs, np.float64)
    with dask.config.set(scheduler="threads"):  # no cluster: Dask's local threads
        assert_same_kmeans(fastlatent.dask.KMeans(4, init=X[keep][:4]).fit(X[keep]), theirs, np.float64)


def test_kmeans_bad_input(client):
    X = blobs(np.float64)
    with_nan = X.copy()
    with_nan[400, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN."):
        fastlatent.dask.KMeans(4).fit(as_dask(with_nan))
    with_inf = X.copy()
    with_inf[5, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        fastlatent.dask.KMeans(4).fit(as_dask(with_inf))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fastlatent.dask.KMeans(4).fit(da.from_array(X[:, 0], chunks=100))
    with pytest.raises(ValueError, match="Complex data not supported"):
        fastlatent.dask.KMeans(4).fit(as_dask(X.astype(np.complex128)))
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        fastlatent.dask.KMeans(4).fit(as_dask(X[:3], (3,)))
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero number"):
        fastlatent.dask.KMeans(4).fit(as_dask(X), sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        negative = -np.ones(len(X))
        fastlatent.dask.KMeans(4).fit(as_dask(X), sample_weight=da.from_array(negative, chunks=100))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\), expected \(600,\)!"):
        fastlatent.dask.KMeans(4).fit(as_dask(X), sample_weight=np.ones(5))
    fitted = fastlatent.dask.KMeans(4, init=X[:4]).fit(as_dask(X))
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 5 features as input."):
        fitted.predict(as_dask(X[:, :3]))
    # Integer input becomes float64, float32 stays float32.
    assert fastlatent.dask.KMeans(4, init=X[:4]).fit(as_dask(X.astype(np.int64))).cluster_centers_.dtype == np.float64


# ---- GaussianMixture ---------------------------------------------------------------------------


def initial_parameters(X, covariance_type, n_components=3):
    means = X[[0, 200, 400]]
    weights = np.full(n_components, 1.0 / n_components)
    precision = np.linalg.inv(np.cov(X.T.astype(np.float64)) + 0.1 * np.eye(X.shape[1]))
    precisions = {
        "full": np.stack([precision] * n_components),
        "tied": precision,
        "diag": np.tile(np.diag(precision), (n_components, 1)),
        "spherical": np.full(n_components, np.diag(precision).mean()),
    }[covariance_type]
    return weights, means, precisions


def assert_same_mixture(ours, theirs, dtype):
    rtol, atol = GMM_PARAMETERS_TOL[dtype]
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=GMM_LOWER_BOUND_RTOL[dtype])
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        expected = getattr(theirs, name)
        assert getattr(ours, name).dtype == dtype, name
        assert_allclose(getattr(ours, name), expected, err_msg=name, rtol=rtol, atol=atol * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_same_fit_as_single_machine(client, dtype, covariance_type):
    X = blobs(dtype, centers=3) + 5  # away from the origin: the merge of the blocks' moments
    weights, means, precisions = initial_parameters(X, covariance_type)
    parameters = dict(
        covariance_type=covariance_type, weights_init=weights, means_init=means, precisions_init=precisions
    )
    ours = fastlatent.dask.GaussianMixture(3, **parameters).fit(as_dask(X))
    theirs = GaussianMixture(3, **parameters).fit(X)
    assert_same_mixture(ours, theirs, dtype)
    labels = ours.predict(as_dask(X))
    assert isinstance(labels, da.Array)
    assert_array_equal(labels.compute(), theirs.predict(X))
    proba = ours.predict_proba(as_dask(X))
    assert isinstance(proba, da.Array)
    rtol, atol = DASK_OUTPUTS_TOL[dtype]
    assert_allclose(proba.compute(), theirs.predict_proba(X), rtol=rtol, atol=atol)
    assert_allclose(ours.score_samples(as_dask(X)).compute(), theirs.score_samples(X), rtol=rtol, atol=atol)
    assert_allclose(ours.score(X), theirs.score(X), rtol=GMM_LOWER_BOUND_RTOL[dtype])
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=GMM_LOWER_BOUND_RTOL[dtype])


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_mixture_initialisations_on_small_data_are_the_single_machine_ones(client, init_params):
    X = blobs(np.float64, centers=3)
    ours = fastlatent.dask.GaussianMixture(3, init_params=init_params, random_state=0).fit(as_dask(X, (600,)))
    theirs = GaussianMixture(3, init_params=init_params, random_state=0).fit(X)
    assert_same_mixture(ours, theirs, np.float64)


def test_mixture_random_init_is_seeded_per_block(client):
    # "random" draws each block's responsibilities from its own seed: not the single-machine
    # numbers, but the same fit for the same random_state, and a proper EM path.
    X = blobs(np.float64, centers=3)
    fits = [
        fastlatent.dask.GaussianMixture(3, init_params="random", random_state=0, max_iter=200).fit(as_dask(X))
        for _ in range(2)
    ]
    assert fits[0].converged_
    assert fits[0].lower_bounds_ == fits[1].lower_bounds_
    assert np.all(np.diff(fits[0].lower_bounds_) >= -1e-12)
    assert_allclose(fits[0].weights_.sum(), 1.0)


def test_mixture_warm_start_continues_like_single_machine(client):
    X = blobs(np.float64, centers=3)
    weights, means, precisions = initial_parameters(X, "diag")
    parameters = dict(
        covariance_type="diag", weights_init=weights, means_init=means, precisions_init=precisions,
        warm_start=True, max_iter=2, tol=1e-10,
    )
    ours, theirs = fastlatent.dask.GaussianMixture(3, **parameters), GaussianMixture(3, **parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged after 2 iterations
        for _ in range(3):
            ours.fit(as_dask(X))
            theirs.fit(X)
    assert_same_mixture(ours, theirs, np.float64)


def test_mixture_fit_predict_is_lazy_and_equals_predict(client):
    X = blobs(np.float64, centers=3)
    mixture = fastlatent.dask.GaussianMixture(3, random_state=0)
    labels = mixture.fit_predict(as_dask(X))
    assert isinstance(labels, da.Array)
    assert_array_equal(labels.compute(), mixture.predict(X).compute())


def test_mixture_bad_input(client):
    X = blobs(np.float64)
    with_nan = X.copy()
    with_nan[10, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN."):
        fastlatent.dask.GaussianMixture(2).fit(as_dask(with_nan))
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\)"):
        fastlatent.dask.GaussianMixture(1).fit(as_dask(X[:1], (1,)))
    with pytest.raises(ValueError, match="The parameter 'means' should have the shape of"):
        fastlatent.dask.GaussianMixture(2, means_init=X[:3]).fit(as_dask(X))
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        constant = np.ones((50, 3))
        fastlatent.dask.GaussianMixture(2, reg_covar=0, init_params="random_from_data", random_state=0).fit(
            as_dask(constant, (25, 25))
        )


# ---- a worker lost in the middle of a fit (last: it restarts a worker) -------------------------


def test_a_worker_lost_in_the_middle_of_a_fit(client, monkeypatch):
    X = blobs(np.float64, n_samples=3000, centers=8)
    init = X[:8]
    expected = KMeans(8, init=init, tol=0).fit(X)
    assert expected.n_iter_ > 4
    reduce_summaries = dask_kmeans_module._reduce_summaries
    calls = []

    def reduce_then_kill_a_worker(summaries):
        calls.append(1)
        if len(calls) == 3:  # after the third iteration: the labels and X's blocks on it are lost
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)
        return reduce_summaries(summaries)

    client.wait_for_workers(2, timeout=60)
    monkeypatch.setattr(dask_kmeans_module, "_reduce_summaries", reduce_then_kill_a_worker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distributed's "worker died" log lines
        try:
            ours = fastlatent.dask.KMeans(8, init=init, tol=0).fit(as_dask(X, (500,) * 6))
        except distributed.KilledWorker as error:  # a clear error is allowed, a wrong model is not
            pytest.skip(f"the fit failed cleanly: {error}")
    assert len(calls) > 3
    assert_same_kmeans(ours, expected, np.float64)


def test_a_worker_lost_in_the_middle_of_a_mixture_fit(client, monkeypatch):
    from fastlatent.dask import _gaussian_mixture as dask_mixture_module

    X = blobs(np.float64, n_samples=2000, centers=3)
    weights, means, precisions = initial_parameters(X, "full")
    parameters = dict(weights_init=weights, means_init=means, precisions_init=precisions, tol=1e-8)
    expected = GaussianMixture(3, **parameters).fit(X)
    assert expected.n_iter_ > 4
    merge = dask_mixture_module._merge_m_step_partials
    calls = []

    def merge_then_kill_a_worker(*args):
        calls.append(1)
        if len(calls) == 3:
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[-1], signal.SIGKILL)
        return merge(*args)

    client.wait_for_workers(2, timeout=60)  # the previous test's worker has restarted
    monkeypatch.setattr(dask_mixture_module, "_merge_m_step_partials", merge_then_kill_a_worker)
    try:
        ours = fastlatent.dask.GaussianMixture(3, **parameters).fit(as_dask(X, (400,) * 5))
    except distributed.KilledWorker as error:
        pytest.skip(f"the fit failed cleanly: {error}")
    assert len(calls) > 3
    assert_same_mixture(ours, expected, np.float64)
