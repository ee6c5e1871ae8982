"""Weight initialisation (``torch.nn.init``): fills a Parameter or array in place.

Random draws come from ``cnnkit._rng``'s generator, so ``cnnkit.manual_seed``
makes them reproducible; pass ``generator=`` to use another.
"""

import math

import numpy as np

from .._rng import default_generator


def _array(tensor):
    return tensor.data if hasattr(tensor, "data") and not isinstance(tensor, np.ndarray) else tensor


def _fill(tensor, values):
    np.copyto(_array(tensor), values, casting="unsafe")
    return tensor


def _fans(array):
    if array.ndim < 2:
        raise ValueError("fan in and fan out can not be computed for an array with fewer than 2 dimensions")
    receptive = int(np.prod(array.shape[2:])) if array.ndim > 2 else 1
    return array.shape[1] * receptive, array.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fan(array, mode):
    fan_in, fan_out = _fans(array)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    rng = generator or default_generator()
    return _fill(tensor, rng.uniform(a, b, size=_array(tensor).shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    rng = generator or default_generator()
    return _fill(tensor, rng.normal(mean, std, size=_array(tensor).shape))


def constant_(tensor, value):
    return _fill(tensor, value)


def zeros_(tensor):
    return _fill(tensor, 0.0)


def ones_(tensor):
    return _fill(tensor, 1.0)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He initialisation, uniform: bound = gain * sqrt(3 / fan)."""
    fan = _fan(_array(tensor), mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He initialisation, normal: std = gain / sqrt(fan)."""
    fan = _fan(_array(tensor), mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot initialisation, uniform: bound = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(tensor))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot initialisation, normal: std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(tensor))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return normal_(tensor, 0.0, std, generator)
