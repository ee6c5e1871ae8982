"""Shared pieces of the CUDA op tests: the emulator module, device arrays of whichever library is
installed (CuPy, else PyTorch CUDA), NaN-poisoned outputs and the skip markers.

The emulator tests run here (they need only the built cnnkit._cuda); the GPU tests skip themselves
where no device is usable and run on a GPU machine (benchmarks/gpu_check.sh).
"""

import numpy as np
import pytest

import cnnkit.cuda

built = pytest.mark.skipif(not cnnkit.cuda.is_built(), reason="cnnkit was built without the CUDA module")
gpu = pytest.mark.skipif(not cnnkit.cuda.is_available(),
                         reason=f"no usable CUDA device: {cnnkit.cuda.unavailable_reason()}")

emulate = cnnkit.cuda._cuda.emulate if cnnkit.cuda.is_built() else None


def _library():
    try:
        import cupy

        return "cupy", cupy
    except ImportError:
        import torch

        return "torch", torch


def to_device(a):
    """A device copy of the NumPy array ``a`` (same dtype and shape)."""
    kind, lib = _library()
    a = np.ascontiguousarray(a)
    return lib.asarray(a) if kind == "cupy" else lib.from_numpy(a).cuda()


def to_host(a):
    """A NumPy copy of the device array ``a`` (synchronises)."""
    kind, lib = _library()
    return lib.asnumpy(a) if kind == "cupy" else a.cpu().numpy()


def poisoned(shape, dtype=np.float32):
    """A device array of ``shape`` filled with NaN (float) or -7 (int), so an element a kernel fails
    to write is caught."""
    return to_device(poisoned_host(shape, dtype))


def poisoned_host(shape, dtype=np.float32):
    """The emulator's counterpart of :func:`poisoned`."""
    return np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -7, dtype)


def stream_of(a):
    return cnnkit.cuda._device.stream_of(a)


def on_host():
    """How a check runs the emulator: its entries (the GPU binding's arguments without the stream),
    NumPy arrays in and out, NaN-poisoned host outputs."""
    return dict(run=lambda op, *args: getattr(emulate, op)(*args), array=lambda a: a, back=lambda a: a,
                poison=poisoned_host)


def on_gpu():
    """The same for the GPU binding: device arrays, the stream of the first argument."""
    module = cnnkit.cuda._cuda
    return dict(run=lambda op, *args: getattr(module, op)(*args, stream_of(args[0])), array=to_device, back=to_host,
                poison=poisoned)
