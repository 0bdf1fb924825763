"""Global and thread-local settings: which backend runs the ops.

Precedence, highest first: the ``backend=`` argument of a function or estimator, then
``config_context`` / ``set_config``, then the environment variable ``FASTLATENT_BACKEND``,
then ``"auto"``.
"""

import os
import threading
from contextlib import contextmanager

BACKEND_CHOICES = ("auto", "cuda", "cpu", "numba", "numpy")

_global_config = {"backend": None}
_thread_local = threading.local()


def _local_config():
    if not hasattr(_thread_local, "config"):
        _thread_local.config = dict(_global_config)
    return _thread_local.config


def check_backend_name(backend):
    """Return ``backend`` if it is a known backend name (or None), else raise ValueError."""
    if backend is not None and backend not in BACKEND_CHOICES:
        raise ValueError(
            f"Unknown backend {backend!r}. Valid backends are "
            + ", ".join(repr(b) for b in BACKEND_CHOICES)
            + "."
        )
    return backend


def get_config():
    """The current settings, as a new dict: ``{"backend": ...}``."""
    return dict(_local_config())


def set_config(backend=None):
    """Set the backend for this thread and for threads started afterwards.

    ``backend=None`` leaves the setting as it is.
    """
    if backend is not None:
        check_backend_name(backend)
        _global_config["backend"] = backend
        _local_config()["backend"] = backend


@contextmanager
def config_context(*, backend=None):
    """Temporarily set the backend within a ``with`` block (this thread only)."""
    check_backend_name(backend)
    local = _local_config()
    previous = dict(local)
    if backend is not None:
        local["backend"] = backend
    try:
        yield
    finally:
        local.clear()
        local.update(previous)


def requested_backend(backend=None):
    """The backend name asked for, by the precedence rules: argument, config, env, "auto"."""
    if backend is not None:
        return check_backend_name(backend)
    configured = _local_config()["backend"]
    if configured is not None:
        return configured
    from_env = os.environ.get("FASTLATENT_BACKEND", "").strip()
    if from_env:
        try:
            return check_backend_name(from_env)
        except ValueError as exc:
            raise ValueError(f"FASTLATENT_BACKEND: {exc}") from None
    return "auto"
