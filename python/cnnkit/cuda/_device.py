"""The caller's device arrays: what kind they are, their stream, and new arrays of the same kind.

Nothing here imports CuPy or PyTorch: the kind is told from the array's type, so a program that
uses only one of them never loads the other.
"""

import sys

_FLOAT32 = "float32"


def _is_torch(x):
    return type(x).__module__.partition(".")[0] == "torch" or any(
        base.__module__.partition(".")[0] == "torch" for base in type(x).__mro__)


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


def empty(shape, like, dtype=_FLOAT32):
    """A new C-contiguous array of ``like``'s kind, on its device, from its library's allocator."""
    if _is_torch(like):
        torch = sys.modules["torch"]
        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=like.device)
    cupy = sys.modules["cupy"]
    with cupy.cuda.Device(device_index(like)):
        return cupy.empty(tuple(shape), dtype=dtype)
