"""Run one oracle test on every device: the CPU, and a CUDA GPU where cnnkit can use one.

A test takes the ``device`` fixture (conftest.py) and calls the op under test through it::

    y = device.call(F.relu, x)          # x: NumPy; y: NumPy, computed on the device

``call`` copies every NumPy array among the arguments to the device (CuPy arrays where CuPy is
installed, else PyTorch CUDA tensors), runs the op there, and copies the results back, so the
oracle comparison that follows is the same for every device. On the GPU every output array the op
allocates starts as NaN (integers: their largest value; ``cnnkit.cuda._device.poison_outputs``), so
an element no kernel wrote fails the comparison, and the inputs are fresh copies for each call.
Arrays an op updates in place (batch norm's running statistics) are copied back into the caller's
NumPy arrays afterwards, so the test reads them as on the CPU.
"""

import importlib.util

import numpy as np
import pytest

import cnnkit

CUDA_SKIP = "no usable CUDA device: " + (cnnkit.cuda.unavailable_reason() or "?")


class Device:
    def __init__(self, name):
        self.name = name
        self.library = None
        if name == "cuda":
            self.library = "cupy" if importlib.util.find_spec("cupy") is not None else "torch"

    def __repr__(self):
        return self.name if self.library is None else f"{self.name} ({self.library})"

    def put(self, value):
        """``value`` on this device: NumPy arrays are copied there, anything else passes as it is."""
        if self.name == "cpu" or not isinstance(value, np.ndarray):
            return value
        from cnnkit.cuda import _device

        return _device.to_device(value, 0, self.library)

    def get(self, value):
        """Results back on the host: device arrays as NumPy arrays, in tuples and lists too."""
        if isinstance(value, (tuple, list)):
            return type(value)(self.get(v) for v in value)
        if self.name == "cpu" or value is None or isinstance(value, (int, float, np.ndarray)):
            return value
        from cnnkit.cuda import _device

        return _device.to_host(value) if _device.is_cuda_array(value) else value

    def call(self, op, *args, **kwargs):
        """``op(*args, **kwargs)`` with the NumPy arrays among the arguments on this device."""
        if self.name == "cpu":
            return op(*args, **kwargs)
        moved_args = [self.put(a) for a in args]
        moved_kwargs = {k: self.put(v) for k, v in kwargs.items()}
        result = op(*moved_args, **moved_kwargs)
        self._write_back(args, moved_args)
        self._write_back(list(kwargs.values()), list(moved_kwargs.values()))
        return self.get(result)

    def _write_back(self, originals, moved):
        # What the op updated in place on the device lands where the test reads it.
        for original, copy in zip(originals, moved):
            if isinstance(original, np.ndarray) and original.flags.writeable and copy is not original:
                np.copyto(original, self.get(copy))


CPU = Device("cpu")


def device_params():
    """pytest params for the ``device`` fixture: "cpu", and "cuda" skipping itself without a GPU."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not cnnkit.cuda.is_available(),
                                                                  reason=CUDA_SKIP))]
