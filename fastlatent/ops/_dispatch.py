"""Backend choice for one op call: the only place that looks at where the data lives."""

from .._arrays import is_device_array, to_device, to_host
from .._config import requested_backend
from ..backends import best_host_backend, get_backend


def select_backend(backend, *arrays):
    """(name, module) of the backend that runs this call, by DESIGN.md's rules."""
    name = requested_backend(backend)
    if name == "auto":
        name = "cuda" if any(is_device_array(a) for a in arrays) else best_host_backend()
    return name, get_backend(name)


def run(op, backend, arrays, *args):
    """Run ``op`` of the chosen backend on validated ``arrays`` plus extra ``args``.

    Arrays are moved to where the backend computes (host or device); the result is
    returned as the backend made it, for the caller to convert with ``_arrays.to_like``.
    """
    name, module = select_backend(backend, *arrays)
    move = to_device if name == "cuda" else to_host
    return getattr(module, op)(*(move(a) for a in arrays), *args)
