"""Array kinds: host (NumPy) or device (CuPy, or anything exposing CUDA memory).

Results come back as the kind of array that came in: NumPy for host input, CuPy for CuPy
input, a torch tensor for a CUDA torch tensor (through DLPack, without copying).
"""

import numpy as np

_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def is_device_array(X):
    """True when X lives in GPU memory (CuPy, __cuda_array_interface__ or CUDA DLPack)."""
    if hasattr(X, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(X, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        device_type, _ = dlpack_device()
    except (TypeError, ValueError, RuntimeError):
        return False
    return int(device_type) in _DLPACK_CUDA_DEVICES


def array_namespace(X):
    """The module that computes on X: ``cupy`` for GPU arrays, else ``numpy``."""
    return _cupy() if is_device_array(X) else np


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            "This array lives on a GPU; fastlatent needs CuPy to work with it "
            "(pip install 'fastlatent[cuda]')."
        ) from exc
    return cupy


def to_device(X):
    """X as a CuPy array (no copy when it already is one on the current device)."""
    cupy = _cupy()
    if isinstance(X, cupy.ndarray) or hasattr(X, "__cuda_array_interface__"):
        return cupy.asarray(X)
    if is_device_array(X):
        return cupy.from_dlpack(X)
    return cupy.asarray(np.asarray(X))


def to_host(X):
    """X as a NumPy array (copied from the GPU when it lives there)."""
    if is_device_array(X):
        return to_device(X).get()
    return np.asarray(X)


def host_if_device(X):
    """X copied to the host when it lives on a GPU, else X itself, unconverted (so that a
    validator after it sees the user's object and gives its own messages)."""
    return to_host(X) if is_device_array(X) else X


def like(result, reference):
    """``result`` (NumPy or CuPy) converted to the kind of array ``reference`` is."""
    if not is_device_array(reference):
        return to_host(result)
    device_result = to_device(result)
    module = type(reference).__module__.split(".")[0]
    if module == "torch":
        import torch

        return torch.from_dlpack(device_result)
    return device_result


def to_like(reference, *results):
    """Each of ``results`` converted by ``like``; a tuple when more than one."""
    converted = tuple(like(r, reference) for r in results)
    return converted if len(converted) > 1 else converted[0]


def logsumexp_rows(a):
    """log sum_j exp(a_ij) of each row of a 2-D NumPy or CuPy array, on the array's side
    (SciPy's ``logsumexp(a, axis=1)``, which is host-only: a row of -inf gives -inf)."""
    xp = array_namespace(a)
    top = a.max(axis=1)
    shift = xp.where(xp.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return xp.log(xp.exp(a - shift[:, None]).sum(axis=1)) + shift
