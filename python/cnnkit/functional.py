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


def _activation(name, input, **params):
    return _C.activation(name, _as_float32(input, "input"), **params)


def _activation_backward(name, grad_output, input, **params):
    g = _as_float32(grad_output, "grad_output")
    x = _as_float32(input, "input")
    if g.shape != x.shape:
        raise ValueError(f"grad_output shape {g.shape} must equal input shape {x.shape}")
    return _C.activation_backward(name, g, x, **params)


def relu(input):
    """max(x, 0) elementwise; NaN stays NaN."""
    return _activation("relu", input)


def relu_backward(grad_output, input):
    """Gradient of :func:`relu`: ``grad_output`` where ``input > 0`` (0 at the kink, like PyTorch)."""
    return _activation_backward("relu", grad_output, input)


def leaky_relu(input, negative_slope=0.01):
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    return _activation("leaky_relu", input, alpha=_float(negative_slope, "negative_slope"))


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    """Gradient of :func:`leaky_relu` (slope ``negative_slope`` at and below 0)."""
    return _activation_backward(
        "leaky_relu", grad_output, input, alpha=_float(negative_slope, "negative_slope")
    )


def elu(input, alpha=1.0):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    return _activation("elu", input, alpha=_float(alpha, "alpha"))


def elu_backward(grad_output, input, alpha=1.0):
    """Gradient of :func:`elu`: ``grad_output * alpha * exp(x)`` where ``x <= 0``."""
    return _activation_backward("elu", grad_output, input, alpha=_float(alpha, "alpha"))


def relu6(input):
    """min(max(x, 0), 6) elementwise; NaN stays NaN."""
    return _activation("relu6", input)


def relu6_backward(grad_output, input):
    """Gradient of :func:`relu6`: ``grad_output`` only where ``0 < x < 6``."""
    return _activation_backward("relu6", grad_output, input)


def sigmoid(input):
    """1 / (1 + exp(-x)), without overflow for any x."""
    return _activation("sigmoid", input)


def sigmoid_backward(grad_output, input):
    """Gradient of :func:`sigmoid`; takes the forward *input* (unlike PyTorch's internal op)."""
    return _activation_backward("sigmoid", grad_output, input)


def tanh(input):
    """Hyperbolic tangent."""
    return _activation("tanh", input)


def tanh_backward(grad_output, input):
    """Gradient of :func:`tanh`; takes the forward *input*. Accurate where tanh rounds to +-1."""
    return _activation_backward("tanh", grad_output, input)


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, and ``x`` itself where ``beta * x > threshold``.

    Never overflows, whatever ``threshold``. ``beta`` must be finite and non-zero.
    """
    return _activation(
        "softplus", input, beta=_float(beta, "beta"), threshold=_float(threshold, "threshold")
    )


def softplus_backward(grad_output, input, beta=1.0, threshold=20.0):
    """Gradient of :func:`softplus`: ``grad_output * sigmoid(beta * x)``, or ``grad_output`` past the threshold."""
    return _activation_backward(
        "softplus",
        grad_output,
        input,
        beta=_float(beta, "beta"),
        threshold=_float(threshold, "threshold"),
    )


def _prelu_arrays(input, weight):
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
    _check_ndim(w, 1, "weight", "(1,) or (C,) with C = input.shape[1]")
    return x, w


def prelu(input, weight):
    """``x`` where ``x > 0``, else ``weight * x``; ``weight`` is (1,) or (C,), C = input.shape[1]."""
    x, w = _prelu_arrays(input, weight)
    return _C.prelu(x, w)


def prelu_backward(grad_output, input, weight):
    """Gradients of :func:`prelu`: ``(grad_input, grad_weight)``, grad_weight shaped like ``weight``."""
    x, w = _prelu_arrays(input, weight)
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"grad_output shape {g.shape} must equal input shape {x.shape}")
    return _C.prelu_backward(g, x, w)


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` for input (*, in), weight (out, in), bias (out,) -> (*, out)."""
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
    _check_ndim(w, 2, "weight", "(out_features, in_features)")
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (*, in_features), got a scalar")
    if bias is None:
        return _C.linear(x, w)
    b = _as_float32(bias, "bias")
    _check_ndim(b, 1, "bias", "(out_features,)")
    return _C.linear(x, w, b)


def linear_backward(grad_output, input, weight, *, input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of :func:`linear`: ``(grad_input, grad_weight, grad_bias)``.

    Each is ``None`` when its flag is false; ``grad_bias`` sums over every leading dim.
    """
    g = _as_float32(grad_output, "grad_output")
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
    _check_ndim(w, 2, "weight", "(out_features, in_features)")
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (*, in_features), got a scalar")
    return tuple(_C.linear_backward(g, x, w, bool(input_grad), bool(weight_grad), bool(bias_grad)))


def softmax(input, dim=-1):
    """exp(x) / sum(exp(x)) along ``dim``, computed with the maximum subtracted (no overflow)."""
    return _C.softmax(_as_float32(input, "input"), _int(dim, "dim"), False)


def softmax_backward(grad_output, output, dim=-1):
    """Gradient of :func:`softmax` from the forward *output* y: ``y * (g - sum(g * y))``."""
    return _C.softmax_backward(
        _as_float32(grad_output, "grad_output"), _as_float32(output, "output"), _int(dim, "dim"), False
    )


def log_softmax(input, dim=-1):
    """x - log(sum(exp(x))) along ``dim``, finite for any finite input."""
    return _C.softmax(_as_float32(input, "input"), _int(dim, "dim"), True)


def log_softmax_backward(grad_output, output, dim=-1):
    """Gradient of :func:`log_softmax` from the forward *output* y: ``g - exp(y) * sum(g)``."""
    return _C.softmax_backward(
        _as_float32(grad_output, "grad_output"), _as_float32(output, "output"), _int(dim, "dim"), True
    )


_REDUCTIONS = ("none", "mean", "sum")
_INT64 = np.iinfo(np.int64)


def _cross_entropy_args(input, target, reduction, ignore_index):
    x = _as_float32(input, "input")
    _check_ndim(x, 2, "input", "(N, C) logits")
    if not isinstance(target, np.ndarray):
        target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array of class indices, got dtype {target.dtype}")
    if target.dtype.kind == "u" and target.size and int(target.max()) > _INT64.max:
        raise IndexError(f"target label {int(target.max())} is out of range [0, {x.shape[1]})")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    ignore_index = _int(ignore_index, "ignore_index")
    if not _INT64.min <= ignore_index <= _INT64.max:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    return x, target, ignore_index


def cross_entropy(input, target, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy of logits (N, C) against class indices (N,).

    Targets equal to ``ignore_index`` contribute nothing; ``"mean"`` averages
    over the others (NaN when there are none, like PyTorch). Returns a float
    for ``"mean"``/``"sum"``, a float32 (N,) array for ``"none"``. A label
    outside [0, C) raises IndexError; a float target raises TypeError.
    """
    x, t, ignore_index = _cross_entropy_args(input, target, reduction, ignore_index)
    out = _C.cross_entropy(x, t, reduction, ignore_index)
    return out if reduction == "none" else float(out)


def cross_entropy_backward(input, target, grad_output=1.0, reduction="mean", ignore_index=-100):
    """Gradient of :func:`cross_entropy` w.r.t. the logits, (N, C).

    ``grad_output`` is the upstream gradient: a scalar for ``"mean"``/``"sum"``,
    an (N,) array for ``"none"``. Rows whose target is ignored get zeros.
    """
    x, t, ignore_index = _cross_entropy_args(input, target, reduction, ignore_index)
    g = _as_float32(grad_output, "grad_output")
    return _C.cross_entropy_backward(x, t, g, reduction, ignore_index)
