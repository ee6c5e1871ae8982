"""The caller's device arrays: what kind they are, their stream, and new arrays of the same kind.

Nothing here imports CuPy or PyTorch: the kind is told from the array's type, so a program that
uses only one of them never loads the other (only :func:`to_device` imports the library it is asked
to allocate with).
"""

import importlib
import importlib.util
import sys

import numpy as np

from .._arrays import _is_torch_type

_FLOAT32 = "float32"


def _is_torch(x):
    return _is_torch_type(type(x))


def is_cuda_array(x):
    """Whether ``x`` is an array in CUDA device memory (a CuPy array, a PyTorch CUDA tensor, ...)."""
    if _is_torch(x):
        return x.device.type == "cuda"
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if dlpack_device is not None:
        return dlpack_device()[0] == 2  # kDLCUDA
    return hasattr(x, "__cuda_array_interface__")


def device_index(x):
    """The CUDA device ordinal that holds ``x``."""
    if _is_torch(x):
        return x.device.index
    dlpack_device = getattr(x, "__dlpack_device__", None)
    return dlpack_device()[1] if dlpack_device is not None else x.device.id


def stream_of(x):
    """The caller's current stream on ``x``'s device, as the integer handle the kernels take."""
    if _is_torch(x):
        return sys.modules["torch"].cuda.current_stream(x.device).cuda_stream
    return sys.modules["cupy"].cuda.get_current_stream().ptr


# Tests set this (poison_outputs) so that every array `empty` hands out starts as NaN (floats) or
# the dtype's largest value (integers): an element a kernel forgets to write then fails the check.
_poison = False


def poison_outputs(enabled):
    """Fill every new array from :func:`empty` with NaN / the integer maximum (for tests)."""
    global _poison
    _poison = bool(enabled)


def empty(shape, like, dtype=_FLOAT32):
    """A new C-contiguous array of ``like``'s kind, on its device, from its library's allocator."""
    if _is_torch(like):
        torch = sys.modules["torch"]
        out = torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=like.device)
    else:
        cupy = sys.modules["cupy"]
        with cupy.cuda.Device(device_index(like)):
            out = cupy.empty(tuple(shape), dtype=dtype)
    if _poison:
        value = float("nan") if np.dtype(dtype).kind == "f" else int(np.iinfo(dtype).max)
        (out.fill_ if _is_torch(out) else out.fill)(value)
    return out


def requires_grad(x):
    """Whether ``x`` is a PyTorch tensor that requires grad (PyTorch exports none of those)."""
    return bool(getattr(x, "requires_grad", False)) and _is_torch(x)


def dtype_name(x):
    """``x``'s dtype as NumPy names it ("float32"), for NumPy, CuPy and PyTorch arrays alike."""
    return str(x.dtype).rpartition(".")[2]


def is_c_contiguous(x):
    return x.is_contiguous() if _is_torch(x) else x.flags.c_contiguous


def namespace(x):
    """The array library of ``x``: NumPy, CuPy or PyTorch, whose element-wise functions the layers
    and optimizers share (``zeros_like``, ``sqrt``, ``sign``, ``maximum``, ``full_like``)."""
    if type(x) is np.ndarray:
        return np
    if _is_torch(x):
        return sys.modules["torch"]
    if is_cuda_array(x):
        return sys.modules["cupy"]
    return np


def copy(x):
    """A new array of ``x``'s kind and device with its values."""
    if _is_torch(x):
        return x.detach().clone()
    return x.copy() if hasattr(x, "copy") else np.array(x, copy=True)


def concatenate(arrays, axis):
    """The device arrays ``arrays`` (one library) joined along ``axis``."""
    if _is_torch(arrays[0]):
        return sys.modules["torch"].cat(arrays, dim=axis)
    return namespace(arrays[0]).concatenate(arrays, axis=axis)


def contiguous(x):
    """``x``, or a C-contiguous copy where it is a strided view."""
    if _is_torch(x):
        return x.contiguous()
    return namespace(x).ascontiguousarray(x)


def to_host(x):
    """``x`` as a NumPy array (a copy of a device array; NumPy arrays and anything else
    ``np.asarray`` reads come back as they are)."""
    if not is_cuda_array(x):
        return np.asarray(x)
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return x.get()


def array_library(library=None):
    """The device array library to use: ``library`` ("cupy" or "torch") if given, else CuPy where
    it is installed (the ``cnnkit[cuda]`` extra), else PyTorch."""
    if library not in (None, "cupy", "torch"):
        raise ValueError(f"library must be 'cupy', 'torch' or None, got {library!r}")
    for name in ((library,) if library else ("cupy", "torch")):
        if importlib.util.find_spec(name) is not None:
            return name
    raise RuntimeError("no CUDA array library: install CuPy (pip install \"cnnkit[cuda]\")"
                       + (" or PyTorch with CUDA" if library is None else f" ({library} was asked for)"))


def library_of(x):
    """The library of the device array ``x``: "torch" or "cupy"."""
    return "torch" if _is_torch(x) else "cupy"


def to_device(x, device, library):
    """``x`` (NumPy or a device array) on CUDA device ``device`` as a C-contiguous array of
    ``library`` ("cupy" or "torch"), keeping its dtype; ``x`` itself if it is there already."""
    if is_cuda_array(x) and device_index(x) == device and library_of(x) == library:
        return x
    host = np.ascontiguousarray(to_host(x))
    if library == "torch":
        torch = importlib.import_module("torch")
        return torch.from_numpy(host).to(f"cuda:{device}")
    cupy = importlib.import_module("cupy")
    with cupy.cuda.Device(device):
        return cupy.asarray(host)


def copy_from_host(target, values):
    """Write the NumPy array ``values`` into the device array ``target``, in place."""
    if _is_torch(target):
        target.copy_(sys.modules["torch"].from_numpy(np.ascontiguousarray(values, dtype=dtype_name(target))))
    else:
        target.set(np.ascontiguousarray(values, dtype=target.dtype))
