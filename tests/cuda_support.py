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


class _EmulatedModule:
    """cnnkit._cuda as the op layer sees it, but every kernel entry runs its emulator (the trailing
    stream argument dropped); entries without an emulator (pool2d_output_size) are the real ones."""

    def __getattr__(self, name):
        if emulate is not None and hasattr(emulate, name):
            kernel = getattr(emulate, name)
            return lambda *args: kernel(*args[:-1])
        return getattr(cnnkit.cuda._cuda, name)


def host_ops(monkeypatch, module):
    """``module`` (a cnnkit.cuda.ops_* module) running on NumPy arrays through the emulators, with
    outputs allocated NaN-poisoned: its Python layer tested end to end without a GPU."""
    monkeypatch.setattr(module, "_cuda", _EmulatedModule())
    monkeypatch.setattr(module, "empty", lambda shape, like, dtype="float32": poisoned_host(tuple(shape), dtype),
                        raising=False)  # ops_optim allocates nothing
    monkeypatch.setattr(module, "stream_of", lambda a: 0)
    return module
