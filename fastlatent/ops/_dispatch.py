"""Backend choice for one op call: the only place that looks at where the data lives."""

from .._arrays import is_device_array, to_device, to_host
from .._config import requested_backend
from ..backends import HOST_BACKENDS, BackendUnavailableError, get_backend, is_available


def select_backend(backend, *arrays, op=None):
    """(name, module) of the backend that runs this call, by DESIGN.md's rules.

    "auto" takes the fastest backend that implements ``op`` (all of them implement the
    distance and k-means ops; a newer op may reach the native backends later than the
    NumPy reference); an explicit backend that lacks ``op`` is an error naming both.
    """
    name = requested_backend(backend)
    if name == "auto":
        if any(is_device_array(a) for a in arrays):
            name = "cuda"
        else:
            name = next(
                b for b in HOST_BACKENDS if is_available(b) and (op is None or hasattr(get_backend(b), op))
            )
    module = get_backend(name)
    if op is not None and not hasattr(module, op):
        raise BackendUnavailableError(
            f"The {name!r} backend does not implement {op!r} yet; backends that do: "
            + ", ".join(b for b in HOST_BACKENDS + ("cuda",) if is_available(b) and hasattr(get_backend(b), op))
            + "."
        )
    return name, module


def run(op, backend, arrays, *args):
    """Run ``op`` of the chosen backend on validated ``arrays`` plus extra ``args``.

    Arrays are moved to where the backend computes (host or device); the result is
    returned as the backend made it, for the caller to convert with ``_arrays.to_like``.
    """
    name, module = select_backend(backend, *arrays, op=op)
    return getattr(module, op)(*place(name, arrays), *args)


def place(name, arrays):
    """``arrays`` moved to where backend ``name`` computes: the device for cuda, else the host."""
    move = to_device if name == "cuda" else to_host
    return tuple(move(a) for a in arrays)
