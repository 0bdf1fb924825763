"""Backend choice: argument > config_context/set_config > FASTLATENT_BACKEND > auto."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastlatent
from fastlatent import ops
from fastlatent.backends import BackendUnavailableError, available_backends, backend_status, is_available


def test_cpu_backend_is_built():
    # pip install compiles fastlatent._cpu on every machine; a test run without it is not a
    # test of this project. (Set FASTLATENT_ALLOW_MISSING_CPU=1 to run from an unbuilt tree.)
    if os.environ.get("FASTLATENT_ALLOW_MISSING_CPU"):
        pytest.skip("FASTLATENT_ALLOW_MISSING_CPU is set")
    assert is_available("cpu"), backend_status()["cpu"][1]


def test_numpy_is_always_available():
    assert "numpy" in available_backends()


def test_auto_picks_the_best_host_backend_for_host_arrays():
    name, _ = ops.select_backend(None, np.ones((2, 2)))
    assert name == next(b for b in ("cpu", "numba", "numpy") if is_available(b))


def test_precedence():
    X = np.ones((2, 2))
    with fastlatent.config_context(backend="numpy"):
        assert ops.select_backend(None, X)[0] == "numpy"
        assert ops.select_backend("numba", X)[0] == "numba"  # the argument wins
    assert ops.select_backend(None, X)[0] != "numpy" or available_backends() == ["numpy"]


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTLATENT_BACKEND", "numpy")
    assert ops.select_backend(None, np.ones((2, 2)))[0] == "numpy"
    with fastlatent.config_context(backend="numba"):
        assert ops.select_backend(None, np.ones((2, 2)))[0] == "numba"
    monkeypatch.setenv("FASTLATENT_BACKEND", "fortran")
    with pytest.raises(ValueError, match="FASTLATENT_BACKEND: Unknown backend 'fortran'"):
        ops.select_backend(None, np.ones((2, 2)))


def test_set_config_and_get_config():
    before = fastlatent.get_config()
    try:
        fastlatent.set_config(backend="numpy")
        assert fastlatent.get_config()["backend"] == "numpy"
    finally:
        fastlatent.set_config(backend=before["backend"] or "auto")


def test_config_context_is_thread_local():
    seen = {}

    def worker():
        seen["backend"] = fastlatent.get_config()["backend"]

    with fastlatent.config_context(backend="numpy"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert fastlatent.get_config()["backend"] == "numpy"
    assert seen["backend"] != "numpy"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="Unknown backend 'gpu'. Valid backends are 'auto', 'cuda'"):
        fastlatent.pairwise_distances(np.ones((2, 2)), backend="gpu")
    with pytest.raises(ValueError, match="Unknown backend"):
        with fastlatent.config_context(backend="tpu"):
            pass


def test_unavailable_backend_says_what_is_missing():
    if is_available("cuda"):
        pytest.skip("the CUDA backend is available here")
    with pytest.raises(BackendUnavailableError, match="The 'cuda' backend is not available: .* It needs"):
        fastlatent.pairwise_distances(np.ones((2, 2)), backend="cuda")


def test_show_backends_lists_every_backend(capsys):
    fastlatent.show_backends()
    out = capsys.readouterr().out
    for name in ("cuda", "cpu", "numba", "numpy"):
        assert f"  {name}" in out
    assert "NumPy" in out


def test_import_works_without_compiled_modules(tmp_path):
    # A copy of the pure-Python package, without _cpu/_cuda: import must still work.
    import shutil

    package = os.path.dirname(fastlatent.__file__)
    shutil.copytree(package, tmp_path / "fastlatent", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    code = (
        "import fastlatent, numpy as np; "
        "s = fastlatent.backends.backend_status(); "
        "assert not s['cpu'][0] and not s['cuda'][0], s; "
        "print(fastlatent.pairwise_distances(np.eye(2))[0, 1])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(np.sqrt(2.0))


def test_auto_skips_a_backend_without_the_op_and_explicit_names_it(monkeypatch):
    from fastlatent.backends import get_backend

    for name in ("cpu", "numba"):
        if is_available(name):
            monkeypatch.delattr(get_backend(name), "kneighbors")
    X = np.ones((3, 2))
    assert ops.select_backend("auto", X, op="kneighbors")[0] == "numpy"
    assert ops.select_backend("auto", X, op="pairwise_distances")[0] != "numpy" or available_backends() == ["numpy"]
    with pytest.raises(BackendUnavailableError, match="The 'numba' backend does not implement 'kneighbors' yet; backends that do: numpy."):
        ops.select_backend("numba", X, op="kneighbors")
