"""Backend registry: which backends can run here, and why not.

A backend is a module in this package implementing every op with the same name and
contract as ``fastlatent.backends.numpy`` (the reference). Importing fastlatent never
fails because a compiled module or an optional dependency is missing: the backend is
reported unavailable, with the reason.
"""

import importlib

HOST_BACKENDS = ("cpu", "numba", "numpy")  # in the order "auto" prefers them
ALL_BACKENDS = ("cuda",) + HOST_BACKENDS

_WHAT_PROVIDES = {
    "cuda": "the compiled module fastlatent._cuda (built when CMake finds nvcc), CuPy "
    "(pip install 'fastlatent[cuda]') and an NVIDIA GPU",
    "cpu": "the compiled module fastlatent._cpu (built by pip install)",
    "numba": "Numba (pip install 'fastlatent[numba]')",
    "numpy": "NumPy",
}

_loaded = {}  # name -> (module or None, reason or None); filled once per process


class BackendUnavailableError(ImportError):
    """Raised when a backend is asked for by name but cannot run here."""


def _load(name):
    if name not in _loaded:
        try:
            module = importlib.import_module(f"fastlatent.backends.{name}")
        except ImportError as exc:
            _loaded[name] = (None, f"{type(exc).__name__}: {exc}")
        else:
            reason = getattr(module, "unavailable_reason", lambda: None)()
            _loaded[name] = (None, reason) if reason else (module, None)
    return _loaded[name]


def get_backend(name):
    """The backend module ``name``; raises BackendUnavailableError saying what is missing."""
    if name not in ALL_BACKENDS:
        raise ValueError(
            f"Unknown backend {name!r}. Valid backends are "
            + ", ".join(repr(b) for b in ("auto",) + ALL_BACKENDS)
            + "."
        )
    module, reason = _load(name)
    if module is None:
        raise BackendUnavailableError(
            f"The {name!r} backend is not available: {reason}. It needs {_WHAT_PROVIDES[name]}. "
            "fastlatent.show_backends() lists what is available."
        )
    return module


def is_available(name):
    return _load(name)[0] is not None


def best_host_backend():
    """The fastest host backend present: cpu, else numba, else numpy."""
    for name in HOST_BACKENDS:
        if is_available(name):
            return name
    raise BackendUnavailableError("no host backend is available (NumPy is missing?)")


def available_backends():
    """Names of the backends that can run here, fastest first."""
    return [name for name in ALL_BACKENDS if is_available(name)]


def backend_status():
    """``{name: (available, detail)}`` for every backend."""
    status = {}
    for name in ALL_BACKENDS:
        module, reason = _load(name)
        if module is None:
            status[name] = (False, reason)
        else:
            status[name] = (True, getattr(module, "describe", lambda: "")())
    return status


def show_backends(file=None):
    """Print which backends are available, and why the others are not."""
    lines = ["fastlatent backends:"]
    for name, (available, detail) in backend_status().items():
        mark = "available  " if available else "unavailable"
        lines.append(f"  {name:<6} {mark}  {detail}")
    print("\n".join(lines), file=file)
