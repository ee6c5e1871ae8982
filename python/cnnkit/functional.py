"""Every cnnkit op, forward and backward, on arrays: the backend API.

Names, argument order and defaults follow ``torch.nn.functional``. Arrays are
NCHW. Inputs may be NumPy arrays or any object NumPy can read (``__array__``,
``__dlpack__`` on the CPU, nested lists).

dtype policy: float32 input is used as is (a copy is made only when it is not
C-contiguous). float16, float64 and integer input is converted to float32 —
the result is float32. bool, complex, object and string arrays raise
``TypeError``: they are never silently read as numbers. Arrays an op writes
into (batch norm's running statistics) must already be writeable float32
C-contiguous arrays, otherwise ``TypeError``/``ValueError``: the update would
otherwise land in a temporary copy and be lost.

Every differentiable op ``f`` has ``f_backward`` that returns the gradient of
its inputs given the gradient of its output.
"""

import numbers
import operator

import numpy as np

from . import _C

# ----------------------------------------------------------------------------
# argument handling shared by every op
# ----------------------------------------------------------------------------


def _as_float32(x, name):
    """``x`` as a C-contiguous float32 ndarray, following the module's dtype policy."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
            x = np.from_dlpack(x)
        else:
            x = np.asarray(x)
    kind = x.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} must be a float or integer array, got dtype {x.dtype} "
            "(bool, complex, object and string arrays are not converted)"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_ndim(x, ndims, name, layout=None):
    """Raise ValueError unless ``x.ndim`` is in ``ndims``."""
    if isinstance(ndims, int):
        ndims = (ndims,)
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        extra = f" ({layout})" if layout else ""
        raise ValueError(f"{name} must be {want}-D{extra}, got shape {tuple(x.shape)}")


def _int(value, name):
    """An exact integer argument (bools and floats are rejected)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _pair(value, name, minimum=None):
    """An int or a pair of ints as a 2-tuple, each at least ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (_int(value[0], name), _int(value[1], name))
    else:
        v = _int(value, name)
        pair = (v, v)
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _float(value, name):
    """A real scalar argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _state_array(a, name, shape):
    """An array an op writes into: writeable float32 C-contiguous of ``shape``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray updated in place, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32 to be updated in place, got {a.dtype}")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous to be updated in place")
    if not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


# ----------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------
