import os

import numpy as np
import pytest
from hypothesis import settings

# Locally hypothesis explores new examples on every run; in CI (CI=true) it replays a fixed
# sequence, so a submission's result does not depend on the draw.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from fastlatent.backends import ALL_BACKENDS, is_available

NATIVE_AND_JIT = [b for b in ALL_BACKENDS if b != "numpy"]


def _backend_param(name):
    marks = [pytest.mark.gpu] if name == "cuda" else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(params=[_backend_param(b) for b in NATIVE_AND_JIT])
def backend(request):
    """Each non-reference backend; skipped where it cannot run here."""
    if not is_available(request.param):
        pytest.skip(f"backend {request.param!r} not available here")
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    if is_available("cuda"):
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and the CUDA backend")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    from fastlatent.backends import backend_status

    lines = [f"fastlatent backends (FASTLATENT_BACKEND={os.environ.get('FASTLATENT_BACKEND', '')!r}):"]
    for name, (available, detail) in backend_status().items():
        lines.append(f"  {name}: {'yes' if available else 'no'} - {detail}")
    return lines
