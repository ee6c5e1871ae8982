"""cnnkit on NVIDIA GPUs.

The CUDA kernels live in their own extension module, ``cnnkit._cuda``, built only where a CUDA
toolkit was found, so ``import cnnkit`` never needs a GPU, a driver or the CUDA libraries. Device
arrays are the caller's own: CuPy arrays and PyTorch CUDA tensors go into ``cnnkit.functional``
and come back as the same kind, on the caller's current stream.
"""

try:
    from .. import _cuda
except ImportError as _error:  # a CPU-only build
    _cuda = None
    _why_not_built = f"cnnkit was built without CUDA ({_error})"
else:
    _why_not_built = ""

__all__ = ["is_built", "is_available", "device_count", "unavailable_reason"]


def is_built():
    """Whether this build of cnnkit has the CUDA module."""
    return _cuda is not None


def device_count():
    """The number of CUDA devices cnnkit can use (0 without the module, a driver or a GPU)."""
    return _cuda.device_count()[0] if _cuda is not None else 0


def is_available():
    """Whether cnnkit can run kernels on a GPU here."""
    return device_count() > 0


def unavailable_reason():
    """Why :func:`is_available` is false ("" when it is true)."""
    if _cuda is None:
        return _why_not_built
    return _cuda.device_count()[1]
