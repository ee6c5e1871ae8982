"""Every cnnkit op, forward and backward, on arrays: the backend API.

Names, argument order and defaults follow ``torch.nn.functional``. Arrays are
NCHW. Inputs may be NumPy arrays, any object exporting ``__dlpack__`` on the
CPU (PyTorch tensors, JAX arrays), read without a copy, or anything else NumPy
can read (``__array__``, nested lists). Results come back in the kind of the
first DLPack argument (torch in, torch out; see ``cnnkit._arrays``).

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

import math
import numbers
import operator
import warnings

import numpy as np

from . import _C, _arrays

__all__ = [
    # convolution and pooling
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    # normalisation and dropout
    "batch_norm", "batch_norm_backward", "batch_norm_relu", "batch_norm_relu_backward",
    "local_response_norm", "local_response_norm_backward",
    "dropout", "dropout_backward", "dropout2d", "dropout2d_backward",
    # activations
    "add", "add_relu", "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "relu6", "relu6_backward", "hardtanh", "hardtanh_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "softplus", "softplus_backward", "prelu", "prelu_backward",
    "gelu", "gelu_backward", "silu", "silu_backward", "maxout", "maxout_backward",
    # linear, softmax and losses
    "linear", "linear_backward", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "cross_entropy", "cross_entropy_backward", "nll_loss", "nll_loss_backward",
    "mse_loss", "mse_loss_backward", "l1_loss", "l1_loss_backward",
    "multi_margin_loss", "multi_margin_loss_backward",
    # reshaping, padding, resampling, encoding
    "flatten", "flatten_backward", "pad", "pad_backward", "interpolate", "interpolate_backward", "one_hot",
]

# ----------------------------------------------------------------------------
# argument handling shared by every op
# ----------------------------------------------------------------------------


def _as_float32(x, name):
    """``x`` as a C-contiguous float32 ndarray, following the module's dtype policy."""
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return x  # the common case, without np.asarray's overhead
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    kind = x.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} must be a float or integer array, got dtype {x.dtype} "
            "(bool, complex, object and string arrays are not converted)"
        )
    return np.asarray(x, dtype=np.float32, order="C")


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


def _positive_int(value, name):
    """An exact integer argument that is at least 1."""
    value = _int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _pair(value, name, minimum=None):
    """An int, a pair of ints or a one-element sequence as a 2-tuple, each at least ``minimum``."""
    if type(value) is int and (minimum is None or value >= minimum):
        return (value, value)  # the common case, checked without the general path's calls
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, 2):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        # A one-element sequence stands for both sides, as PyTorch's (2,).
        pair = (_int(value[0], name), _int(value[-1], name))
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
# adaptive pooling, local response norm and dropout (native kernels behind NumPy-side
# argument handling), regression and margin losses (NumPy)
# ----------------------------------------------------------------------------


def _adaptive_args(input, output_size):
    """The input as NCHW (a CHW input gets a batch axis), whether it came as CHW, and the output size."""
    x = _as_float32(input, "input")
    _check_ndim(x, (3, 4), "input", "N, C, H, W or unbatched C, H, W")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    sizes = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size]
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2:
        raise ValueError(f"output_size must be an int, None or a pair of them, got {output_size!r}")
    # None keeps that dimension's input size: H for the height, W for the width.
    oh, ow = (x.shape[2 + i] if size is None else size for i, size in enumerate(sizes))
    oh, ow = _pair((oh, ow), "output_size", minimum=1)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"input must have non-empty H and W for adaptive pooling, got {x.shape}")
    return x, unbatched, oh, ow


def adaptive_avg_pool2d(input, output_size):
    """Average pooling of an (N, C, H, W) or (C, H, W) array to ``output_size`` (an int or a pair;
    None keeps that dimension's size); 1 = global average."""
    x, unbatched, oh, ow = _adaptive_args(input, output_size)
    out = _C.adaptive_avg_pool2d(x, oh, ow)
    return out[0] if unbatched else out


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d`: each output's gradient spread evenly over its window."""
    x, unbatched, oh, ow = _adaptive_args(input, output_size)
    g = _as_float32(grad_output, "grad_output")
    want = x.shape[1:2] + (oh, ow) if unbatched else x.shape[:2] + (oh, ow)
    if g.shape != want:
        raise ValueError(f"grad_output must have shape {want}, got {g.shape}")
    if unbatched:
        g = g[None]
    dx = _C.adaptive_avg_pool2d_backward(g, x.shape)
    return dx[0] if unbatched else dx


def _lrn_args(input, size, alpha, beta, k):
    x = _as_float32(input, "input")
    if x.ndim < 3:
        raise ValueError(f"input must have at least 3 dimensions (N, C, ...), got shape {x.shape}")
    size = _int(size, "size")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return x, size, _float(alpha, "alpha"), _float(beta, "beta"), _float(k, "k")


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """``x / (k + alpha/size * sum of x^2 over size neighbouring channels) ** beta``."""
    x, size, alpha, beta, k = _lrn_args(input, size, alpha, beta, k)
    return _C.local_response_norm(x, size, alpha, beta, k)


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of :func:`local_response_norm` with respect to its input."""
    x, size, alpha, beta, k = _lrn_args(input, size, alpha, beta, k)
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"grad_output must have shape {x.shape}, got {g.shape}")
    return _C.local_response_norm_backward(g, x, size, alpha, beta, k)


def _dropout(input, p, training, inplace, generator, return_mask, channel):
    """``input * mask`` and the mask: 0 with probability ``p``, else 1/(1-p); all ones when not
    training. The native kernel draws the mask from a Philox stream whose key is one draw from
    ``generator`` (or cnnkit's seeded default), so a seed fixes the mask whatever the thread count."""
    from ._rng import default_generator

    p = _float(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    inplace = _flag(inplace, "inplace")
    x = _state_array(input, "input", np.shape(input)) if inplace else _as_float32(input, "input")
    mask_shape = x.shape[:2] + (1,) * (x.ndim - 2) if channel else x.shape
    if training and 0.0 < p < 1.0:
        rng = generator or default_generator()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator, got {type(rng).__name__}")
        key = int(rng.integers(0, 2**64, dtype=np.uint64))
        out, mask = _C.dropout(x, p, key, channel, out=x if inplace else None)
    else:
        mask = np.full(mask_shape, 0.0 if training and p == 1.0 else 1.0, np.float32)
        out = x * mask
        if inplace:
            np.copyto(x, out)
            out = x
    return (out, mask) if return_mask else out


def dropout(input, p=0.5, training=True, inplace=False, *, generator=None, return_mask=False):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    Identity when ``training`` is False. Random draws come from ``generator`` or
    cnnkit's seeded default. ``inplace=True`` writes the result into ``input``,
    which must then be a writeable float32 C-contiguous array (else
    ``TypeError``/``ValueError``). ``return_mask=True`` also returns the float32
    mask (0 or 1/(1-p)) that :func:`dropout_backward` takes.
    """
    return _dropout(input, p, training, inplace, generator, return_mask, channel=False)


def dropout_backward(grad_output, mask, p=0.5):
    """Gradient of :func:`dropout` given the mask it returned."""
    g = _as_float32(grad_output, "grad_output")
    mask = _as_float32(mask, "mask")
    if g.shape != mask.shape:
        raise ValueError(f"grad_output shape {g.shape} does not match mask shape {mask.shape}")
    return g * mask


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None, return_mask=False):
    """Channel dropout: zero whole channels of an (N, C, H, W) input with probability ``p``, scale
    the rest by 1/(1-p); identity when ``training`` is False.

    A 3-D input is read as (N, C, L), as PyTorch does today (with its warning). The mask that
    ``return_mask=True`` returns has shape (N, C, 1, 1) (or (N, C, 1)) and broadcasts over the
    plane; :func:`dropout2d_backward` takes it. ``inplace``, ``generator`` as in :func:`dropout`.
    """
    ndim = np.ndim(input)
    if ndim not in (3, 4):
        raise ValueError(f"dropout2d: input must be 4-D (N, C, H, W) or 3-D (N, C, L), "
                         f"got shape {np.shape(input)}")
    if ndim == 3:
        warnings.warn("dropout2d: a 3-D input is read as (N, C, L) and whole channels of length L "
                      "are dropped, as PyTorch does today", UserWarning, stacklevel=2)
    return _dropout(input, p, training, inplace, generator, return_mask, channel=True)


def dropout2d_backward(grad_output, mask, p=0.5):
    """Gradient of :func:`dropout2d` given the (N, C, 1, 1) mask it returned."""
    g = _as_float32(grad_output, "grad_output")
    mask = _as_float32(mask, "mask")
    if mask.shape != g.shape[:2] + (1,) * (g.ndim - 2):
        raise ValueError(f"mask shape {mask.shape} does not match grad_output shape {g.shape} "
                         "(it must be (N, C, 1, 1) for an (N, C, H, W) gradient)")
    return g * mask


def _regression_args(input, target, reduction):
    x = _as_float32(input, "input")
    t = _as_float32(target, "target")
    if x.shape != t.shape:
        raise ValueError(f"input shape {x.shape} and target shape {t.shape} must match")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return x, t


def _reduce(values, reduction):
    if reduction == "none":
        return values.astype(np.float32)
    total = float(values.sum(dtype=np.float64))
    return total / values.size if reduction == "mean" and values.size else (
        float("nan") if reduction == "mean" else total)


def _scale_grad(grad, grad_output, reduction, count):
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "mean":
        g = g / max(count, 1)
    return (grad * g).astype(np.float32)


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum, or per-element) squared error."""
    x, t = _regression_args(input, target, reduction)
    d = x.astype(np.float64) - t
    return _reduce(d * d, reduction)


def mse_loss_backward(input, target, grad_output=1.0, reduction="mean"):
    x, t = _regression_args(input, target, reduction)
    return _scale_grad(2.0 * (x.astype(np.float64) - t), grad_output, reduction, x.size)


def l1_loss(input, target, reduction="mean"):
    """Mean (or sum, or per-element) absolute error."""
    x, t = _regression_args(input, target, reduction)
    return _reduce(np.abs(x.astype(np.float64) - t), reduction)


def l1_loss_backward(input, target, grad_output=1.0, reduction="mean"):
    """sign(input - target), 0 where they are equal (PyTorch's subgradient)."""
    x, t = _regression_args(input, target, reduction)
    return _scale_grad(np.sign(x.astype(np.float64) - t), grad_output, reduction, x.size)


def _margin_args(input, target, p, margin, reduction):
    x = _as_float32(input, "input")
    _check_ndim(x, 2, "input", "N, C")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array of class indices, got dtype {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"target must have shape ({x.shape[0]},), got {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= x.shape[1]):
        bad = t[(t < 0) | (t >= x.shape[1])][0]
        raise IndexError(f"target {bad} is out of bounds for {x.shape[1]} classes")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    x64 = x.astype(np.float64)
    rows = np.arange(x.shape[0])
    hinge = _float(margin, "margin") - x64[rows, t][:, None] + x64
    hinge[rows, t] = 0.0
    return x64, t.astype(np.int64), rows, np.maximum(hinge, 0.0)


def multi_margin_loss(input, target, p=1, margin=1.0, reduction="mean"):
    """Multi-class hinge loss: sum over j != y of max(0, margin - x[y] + x[j])**p, divided by C."""
    x64, _, _, hinge = _margin_args(input, target, p, margin, reduction)
    per_sample = (hinge**p).sum(axis=1) / max(x64.shape[1], 1)
    return _reduce(per_sample, reduction)


def multi_margin_loss_backward(input, target, grad_output=1.0, p=1, margin=1.0, reduction="mean"):
    x64, t, rows, hinge = _margin_args(input, target, p, margin, reduction)
    active = hinge > 0
    d = (active if p == 1 else 2.0 * hinge) / max(x64.shape[1], 1)
    d = np.where(active, d, 0.0)
    d[rows, t] = -d.sum(axis=1)
    g = np.asarray(grad_output, dtype=np.float64)
    g = g[:, None] if g.ndim == 1 else g
    if reduction == "mean":
        g = g / max(x64.shape[0], 1)
    return (d * g).astype(np.float32)


# ----------------------------------------------------------------------------
# reshaping, padding, resampling and one-hot encoding (NumPy, vectorised)
# ----------------------------------------------------------------------------


def _dim(dim, ndim, name):
    """``dim`` as an index in [0, ndim), negative counting from the end (a 0-d array takes 0 and -1).

    Out of range raises ``numpy.exceptions.AxisError``, both a ValueError and an IndexError.
    """
    d = _int(dim, name)
    size = max(ndim, 1)
    if not -size <= d < size:
        raise np.exceptions.AxisError(
            f"{name}={d} is out of range for a {ndim}-D input (expected [{-size}, {size - 1}])")
    return d % size


def flatten(input, start_dim=0, end_dim=-1):
    """``input`` with dimensions ``start_dim`` .. ``end_dim`` merged into one, as ``torch.flatten``.

    A view where NumPy can make one. The dtype is kept (nothing is computed); a 0-d input
    becomes 1-D. Backward: :func:`flatten_backward`.
    """
    x = np.asarray(input)
    start, end = _dim(start_dim, x.ndim, "start_dim"), _dim(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} must not come after end_dim {end_dim} "
                         f"for a {x.ndim}-D input")
    if x.ndim == 0:
        return x.reshape(1)
    return x.reshape(x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])


def flatten_backward(grad_output, input):
    """Gradient of :func:`flatten`: ``grad_output`` in the shape of ``input`` (only its shape is used)."""
    g = _as_float32(grad_output, "grad_output")
    shape = np.shape(input)
    if g.size != math.prod(shape):
        raise ValueError(f"grad_output of shape {g.shape} can not be the flattened input of shape {shape}")
    return g.reshape(shape)


# PyTorch's padding modes and NumPy's names for them.
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_widths(ndim, pad, mode):
    """PyTorch's ``pad`` (left, right, top, bottom, ...: last dimension first) as (before, after)
    per dimension of an ``ndim``-D array."""
    if not isinstance(mode, str) or mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {tuple(_PAD_MODES)}, got {mode!r}")
    if not isinstance(pad, (tuple, list)) or len(pad) % 2:
        raise ValueError("pad: pad must be a sequence of an even number of ints (left, right, top, "
                         f"bottom, ...), got {pad!r}")
    pad = [_int(p, "pad") for p in pad]
    if pad and max(abs(p) for p in pad) > _INT64_MAX:
        raise OverflowError(f"pad: pad {tuple(pad)} does not fit in 64-bit integers")
    k = len(pad) // 2
    if k > ndim:
        raise ValueError(f"pad: pad {tuple(pad)} pads {k} dimensions, the input has only {ndim}")
    if mode != "constant" and not (1 <= k <= 3 and k + 1 <= ndim <= k + 2):
        raise ValueError(f"pad: mode {mode!r} pads the last 1, 2 or 3 dimensions of a 2-D to 5-D input "
                         f"(one or two leading batch/channel dimensions): pad of length {len(pad)} "
                         f"does not fit a {ndim}-D input")
    widths = [(0, 0)] * ndim
    for i in range(k):
        widths[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return widths


def _check_pad(shape, widths, mode):
    """Raise ValueError where ``mode`` can not pad a dimension of ``shape`` by its (before, after)."""
    for axis, ((before, after), n) in enumerate(zip(widths, shape)):
        if mode == "constant":
            if max(-before, 0) + max(-after, 0) > n:
                raise ValueError(f"pad: negative padding ({before}, {after}) crops more than dimension "
                                 f"{axis} of size {n} holds")
            continue
        if min(before, after) < 0:
            raise ValueError(f"pad: negative padding ({before}, {after}) is only supported by mode "
                             f"'constant', got mode {mode!r}")
        if (before or after) and (
                n == 0 or (mode == "reflect" and max(before, after) >= n)
                or (mode == "circular" and max(before, after) > n)):
            limit = {"reflect": "smaller than", "circular": "at most", "replicate": "used with"}[mode]
            raise ValueError(f"pad: {mode} padding ({before}, {after}) must be {limit} dimension {axis} "
                             f"of size {n}")


def pad(input, pad, mode="constant", value=None):
    """Pad ``input`` as ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) pairs from the last dimension backwards: ``(left, right)``
    pads the last one, ``(left, right, top, bottom)`` the last two, and so on. Modes:
    ``"constant"`` (``value``, default 0; any number of dimensions; negative pads crop),
    ``"reflect"`` (mirrored without repeating the edge; each pad smaller than its dimension),
    ``"replicate"`` (the edge repeated) and ``"circular"`` (wrapped around; each pad at most its
    dimension). The last three pad the last 1, 2 or 3 dimensions of a 2-D to 5-D input and take
    no ``value``. Backward: :func:`pad_backward`.
    """
    x = _as_float32(input, "input")
    widths = _pad_widths(x.ndim, pad, mode)
    _check_pad(x.shape, widths, mode)
    if mode != "constant":
        if value is not None:
            raise ValueError(f"pad: mode {mode!r} takes no value, got value={value!r}")
        return np.pad(x, widths, mode=_PAD_MODES[mode])
    value = 0.0 if value is None else _float(value, "value")
    crop = tuple(slice(max(-before, 0), n - max(-after, 0)) for (before, after), n in zip(widths, x.shape))
    grow = [(max(before, 0), max(after, 0)) for before, after in widths]
    return np.pad(x[crop], grow, mode="constant", constant_values=np.float32(value))


def _unpad_axis(g, axis, before, after, mode):
    """The gradient for one padded axis folded back onto its input positions."""
    g = np.moveaxis(g, axis, 0)
    n = g.shape[0] - before - after
    if mode == "constant":
        # Positions a negative pad cropped get no gradient.
        out = np.zeros((n,) + g.shape[1:], g.dtype)
        lo, hi = max(-before, 0), n - max(-after, 0)
        out[lo:hi] = g[max(before, 0) : max(before, 0) + hi - lo]
    else:
        out = g[before : before + n].copy()
        left, right = g[:before], g[before + n :]
        if mode == "reflect":
            out[1 : before + 1] += left[::-1]
            out[n - 1 - after : n - 1] += right[::-1]
        elif mode == "replicate":
            out[0] += left.sum(axis=0)
            out[n - 1] += right.sum(axis=0)
        else:
            out[n - before :] += left
            out[:after] += right
    return np.moveaxis(out, 0, axis)


def pad_backward(grad_output, pad, mode="constant"):
    """Gradient of :func:`pad` with respect to its input (whose shape follows from ``pad``).

    Each padded position's gradient goes back to the input position it copied (none for
    ``"constant"``): reflected, edge and wrapped copies add up.
    """
    g = _as_float32(grad_output, "grad_output")
    widths = _pad_widths(g.ndim, pad, mode)
    shape = tuple(m - before - after for (before, after), m in zip(widths, g.shape))
    if min(shape, default=0) < 0:
        raise ValueError(f"pad_backward: grad_output of shape {g.shape} is smaller than pad {tuple(pad)}")
    _check_pad(shape, widths, mode)
    for axis, (before, after) in enumerate(widths):
        if before or after:
            g = _unpad_axis(g, axis, before, after, mode)
    return np.ascontiguousarray(g)


# The input dimensions each interpolation mode takes (batch, channels and 1 to 3 spatial ones).
_INTERPOLATE_NDIM = {"nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "linear": (3,), "bilinear": (4,),
                     "trilinear": (5,)}


def _resample_taps(n_in, n_out, factor, mode, align_corners, spatial_dims):
    """Along one axis, per output position: ``(i0, i1, w1)`` with output = (1 - w1) x[i0] + w1 x[i1]
    (``w1`` None for the nearest modes and copies). ``factor`` is the user's scale factor, or None
    when the output size was given. Both index arrays are non-decreasing."""
    dst = np.arange(n_out)
    # PyTorch's CPU kernels copy an axis whose size does not change (linear modes; nearest on 4-D
    # input, which also halves the index where the size doubles), whatever the scale factor.
    nearest_2d = (mode, spatial_dims) == ("nearest", 2)
    if n_out == n_in and (nearest_2d or mode in ("linear", "bilinear", "trilinear")):
        return dst, dst, None
    if n_out == 2 * n_in and nearest_2d:
        return dst // 2, dst // 2, None
    if mode.startswith("nearest"):
        # PyTorch computes these indices in float32; so does this, to pick the same pixels.
        scale = np.float32(1.0 / factor) if factor else np.float32(n_in) / np.float32(n_out)
        shift = np.float32(0.5 if mode == "nearest-exact" else 0.0)
        i0 = np.floor((dst.astype(np.float32) + shift) * scale).astype(np.int64)
        i0 = np.minimum(i0, n_in - 1)
        return i0, i0, None
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        scale = 1.0 / factor if factor else n_in / n_out
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), src - i0


def _interpolate_plan(shape, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias):
    """Per spatial axis of ``shape``: (axis, input size, taps)."""
    if not isinstance(mode, str) or mode not in _INTERPOLATE_NDIM:
        raise ValueError(f"interpolate: mode must be one of {tuple(_INTERPOLATE_NDIM)}, got {mode!r}")
    ndims = _INTERPOLATE_NDIM[mode]
    if len(shape) not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"interpolate: input must be {want} (N, C, spatial...) for mode {mode!r}, "
                         f"got shape {tuple(shape)}")
    if _flag(antialias, "antialias"):
        raise ValueError("interpolate: antialias=True is not supported")
    linear = mode in ("linear", "bilinear", "trilinear")
    if align_corners is not None and not linear:
        raise ValueError("interpolate: align_corners can only be set with the interpolating modes "
                         f"linear, bilinear and trilinear, got mode {mode!r}")
    align_corners = False if align_corners is None else _flag(align_corners, "align_corners")
    spatial = tuple(shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")

    def per_axis(value, name):
        values = list(value) if isinstance(value, (tuple, list)) else [value] * len(spatial)
        if len(values) != len(spatial):
            raise ValueError(f"interpolate: {name} must have {len(spatial)} elements for a "
                             f"{len(shape)}-D input, got {value!r}")
        return values

    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is only meaningful with scale_factor")
        out = [_int(v, "size") for v in per_axis(size, "size")]
        factors = [None] * len(spatial)
    else:
        factors = [_float(f, "scale_factor") for f in per_axis(scale_factor, "scale_factor")]
        if not all(math.isfinite(f) and f > 0 for f in factors):
            raise ValueError(f"interpolate: scale_factor must be finite and > 0, got {scale_factor!r}")
        out = [math.floor(n * f) for n, f in zip(spatial, factors)]
        if recompute_scale_factor:
            factors = [None] * len(spatial)
    if math.prod(shape[:2]) * math.prod(out) > _INT64_MAX:
        raise OverflowError(f"interpolate: the output size {tuple(out)} is too large for 64-bit sizes")
    if min(spatial) < 1 or min(out) < 1:
        raise ValueError(f"interpolate: input and output sizes must be > 0, got input {spatial} and "
                         f"output {tuple(out)}")
    return [(2 + i, n, _resample_taps(n, o, f, mode, align_corners, len(spatial)))
            for i, (n, o, f) in enumerate(zip(spatial, out, factors))]


def _axis_weight(w1, axis, ndim):
    return w1.reshape((-1,) + (1,) * (ndim - 1 - axis))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resample the spatial dimensions, as ``torch.nn.functional.interpolate``.

    Give ``size`` (an int or one per spatial dimension) or ``scale_factor`` (the output size is
    ``floor(input size * scale_factor)``; the coordinates scale by 1/scale_factor unless
    ``recompute_scale_factor``). Modes: ``"nearest"`` (PyTorch's: source index
    ``floor(dst * scale)``), ``"nearest-exact"`` (``floor((dst + 0.5) * scale)``) for 3-D to 5-D
    input, ``"linear"`` (3-D), ``"bilinear"`` (4-D) and ``"trilinear"`` (5-D), the last three with
    ``align_corners`` (default False: pixel centres; True: corner pixels map onto each other).
    As PyTorch's CPU kernels, the linear modes copy an axis whose size stays the same, and so does
    ``"nearest"`` on 4-D input, which also reads ``dst // 2`` where an axis doubles.
    ``antialias`` must be False. Backward: :func:`interpolate_backward`.
    """
    x = _as_float32(input, "input")
    plan = _interpolate_plan(x.shape, size, scale_factor, mode, align_corners, recompute_scale_factor,
                             antialias)
    y = x
    for axis, _, (i0, i1, w1) in plan:
        lo = np.take(y, i0, axis=axis)
        if w1 is not None:
            w1 = _axis_weight(w1, axis, y.ndim)
            lo = lo * (1.0 - w1) + np.take(y, i1, axis=axis) * w1
        y = lo
    return np.ascontiguousarray(y, dtype=np.float32)


def _sum_into(values, index, n, axis):
    """``n`` slots along ``axis``; slot ``index[o]`` sums slice ``o`` of ``values`` (index non-decreasing)."""
    out = np.zeros(values.shape[:axis] + (n,) + values.shape[axis + 1 :], values.dtype)
    slots, starts = np.unique(index, return_index=True)
    where = [slice(None)] * values.ndim
    where[axis] = slots
    out[tuple(where)] = np.add.reduceat(values, starts, axis=axis)
    return out


def interpolate_backward(grad_output, input, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None, antialias=False):
    """Gradient of :func:`interpolate` with respect to its input (``input`` only supplies the shape):
    each output's gradient goes back to the input pixels it was read from, with their weights —
    the exact adjoint of the forward. (PyTorch's own backward of ``"nearest"`` on 3-D and 5-D
    input copies an axis that keeps or doubles its size although its forward does not.)"""
    shape = np.shape(input)
    plan = _interpolate_plan(shape, size, scale_factor, mode, align_corners, recompute_scale_factor,
                             antialias)
    g = _as_float32(grad_output, "grad_output")
    want = tuple(shape[:2]) + tuple(len(taps[0]) for _, _, taps in plan)
    if g.shape != want:
        raise ValueError(f"interpolate_backward: grad_output must have the output's shape {want}, "
                         f"got {g.shape}")
    g = g.astype(np.float64)
    for axis, n, (i0, i1, w1) in reversed(plan):
        if w1 is None:
            g = _sum_into(g, i0, n, axis)
        else:
            w1 = _axis_weight(w1, axis, g.ndim)
            g = _sum_into(g * (1.0 - w1), i0, n, axis) + _sum_into(g * w1, i1, n, axis)
    return g.astype(np.float32)


def one_hot(tensor, num_classes=-1):
    """int64 array of shape ``tensor.shape + (num_classes,)``: 1 at each entry's class, 0 elsewhere,
    as ``torch.nn.functional.one_hot``. ``num_classes=-1`` takes the largest class + 1.

    ``tensor`` must hold integers (else ``TypeError``); a class outside [0, num_classes) raises
    ``IndexError``.
    """
    t = np.asarray(tensor)
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot: tensor must be an integer array of class indices, got dtype {t.dtype}")
    num_classes = _int(num_classes, "num_classes")
    if num_classes == -1:
        if t.size == 0:
            raise ValueError("one_hot: can not infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(t.max()) + 1
    elif num_classes < 0:
        raise ValueError(f"one_hot: num_classes must be -1 or >= 0, got {num_classes}")
    if t.size and int(t.min()) < 0:
        raise IndexError(f"one_hot: class values must be non-negative, got {int(t.min())}")
    if t.size and int(t.max()) >= num_classes:
        raise IndexError(f"one_hot: class value {int(t.max())} is out of range for num_classes={num_classes}")
    out = np.zeros(t.shape + (num_classes,), np.int64)
    np.put_along_axis(out, t[..., None].astype(np.int64), 1, axis=-1)
    return out



# ----------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------

_CONV_ALGOS = ("auto", "direct", "im2col")
_INT64_MAX = 2**63 - 1


def _conv_padding(padding, kernel, stride, dilation):
    """``padding`` (int, pair, "valid" or "same") as (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' is not supported for strided convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                # As PyTorch: an odd total puts the extra row/column at the bottom/right.
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _check_int64(**values):
    """OverflowError naming the first argument whose tuple of ints has one past int64."""
    for name, pair in values.items():
        if max(pair) > _INT64_MAX:
            raise OverflowError(f"{name} {pair} does not fit in a 64-bit integer")


def _plain_pair(value):
    """``value`` as a pair when it is an int or a 2-tuple of ints (not bools), else None."""
    if type(value) is int:
        return (value, value)
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    return None


def _conv_setup(input, weight, stride, padding, dilation, groups, algo):
    """Converted arrays and normalised parameters shared by conv2d and its backward."""
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
    # The common call (plain ints or pairs of them in range, a valid algo, 4-D
    # arrays), answered without the general path's calls: it is per-layer
    # overhead of every step (nn.Conv2d passes pairs: the general path cost
    # it 4 us of LeNet c2's 80).
    s, pd, d = _plain_pair(stride), _plain_pair(padding), _plain_pair(dilation)
    if (s is not None and pd is not None and d is not None and type(groups) is int
            and 1 <= s[0] <= _INT64_MAX and 1 <= s[1] <= _INT64_MAX and 0 <= pd[0] <= _INT64_MAX
            and 0 <= pd[1] <= _INT64_MAX and 1 <= d[0] <= _INT64_MAX and 1 <= d[1] <= _INT64_MAX
            and 1 <= groups <= _INT64_MAX and type(algo) is str and algo in _CONV_ALGOS
            and x.ndim == 4 and w.ndim == 4):
        return x, w, s, (pd[0], pd[0], pd[1], pd[1]), d, groups
    _check_ndim(x, (3, 4), "input", "N, C, H, W or unbatched C, H, W")
    _check_ndim(w, 4, "weight", "out_channels, in_channels/groups, kH, kW")
    stride = _pair(stride, "stride", minimum=1)
    dilation = _pair(dilation, "dilation", minimum=1)
    groups = _int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if not isinstance(algo, str) or algo not in _CONV_ALGOS:
        raise ValueError(f"algo must be one of {_CONV_ALGOS}, got {algo!r}")
    pads = _conv_padding(padding, w.shape[2:], stride, dilation)
    _check_int64(stride=stride, padding=pads, dilation=dilation, groups=(groups,))
    return x, w, stride, pads, dilation, groups


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algo="auto"):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    input: (N, C, H, W) or unbatched (C, H, W); weight: (out, C/groups, kH, kW);
    bias: (out,) or None. ``stride`` and ``dilation`` are an int or a pair;
    ``padding`` an int, a pair, ``"valid"`` (0) or ``"same"`` (output size =
    input size; stride must be 1; an odd total padding puts the extra
    row/column at the bottom/right). Returns (N, out, Ho, Wo) float32 with
    Ho = (H + pad_top + pad_bottom - dilation*(kH-1) - 1) // stride + 1.

    ``algo``: ``"direct"`` (no column matrix: on AVX2/AVX-512 CPUs kernels
    vectorised over output channels or over zero-padded rows, or for one
    input channel per group (depthwise) along output rows, else plain
    loops), ``"im2col"`` (column matrix + SGEMM, workspace bounded to 64 MiB
    by processing chunks of output positions) or ``"auto"`` (per shape, ISA
    cap and thread count, the implementation that measured fastest on this
    machine on the shape's first call, see :mod:`cnnkit.autotune`; a fixed
    heuristic with autotuning off; ``cnnkit.build_info()["kernels"]`` shows
    the choices for common layers). All give the same result within float32
    rounding. NaN and Inf in the input propagate to every output that reads
    them. Taps that fall in the zero padding contribute exactly 0 in the
    plain direct loops but 0*w in im2col and the vectorised direct kernels,
    so an infinite or NaN *weight* turns padded border outputs into NaN with
    those (and likewise 0*dy in the weight gradient).

    An input of H or W 0 that the padding makes large enough for the kernel
    gives the output of an all-padding image (the bias); PyTorch refuses it.
    """
    x, w, stride, pads, dilation, groups = _conv_setup(input, weight, stride, padding, dilation, groups, algo)
    b = None if bias is None else _as_float32(bias, "bias")
    if x.ndim == 3:
        return _C.conv2d(x[None], w, b, stride, pads, dilation, groups, algo)[0]
    return _C.conv2d(x, w, b, stride, pads, dilation, groups, algo)


def conv2d_backward(
    grad_output,
    input,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    input_grad=True,
    weight_grad=True,
    bias_grad=True,
    algo="auto",
):
    """Gradients of :func:`conv2d`: ``(grad_input, grad_weight, grad_bias)``.

    ``grad_output`` has the shape conv2d returned for the same arguments.
    Each gradient is computed only when its flag is true and is None
    otherwise (a first layer needs no ``grad_input``; a layer without bias no
    ``grad_bias``). grad_input has the input's shape, grad_weight the
    weight's, grad_bias is (out,). ``algo`` as in :func:`conv2d`: direct
    kernels (on AVX2/AVX-512 the weight gradient vectorised over output
    channels or rows, and for stride 1 the input gradient as the direct
    forward of the flipped kernel; depthwise layers gather the input gradient
    per phase of the strided rows; plain loops otherwise), or GEMM + col2im
    for the input gradient and GEMM against the column matrix (summed over
    the batch) for the weight gradient.
    """
    x, w, stride, pads, dilation, groups = _conv_setup(input, weight, stride, padding, dilation, groups, algo)
    dy = _as_float32(grad_output, "grad_output")
    _check_ndim(dy, x.ndim, "grad_output", "the conv2d output for this input")
    unbatched = x.ndim == 3
    if unbatched:
        x, dy = x[None], dy[None]
    dx, dw, db = _C.conv2d_backward(
        dy, x, w, stride, pads, dilation, groups, bool(input_grad), bool(weight_grad), bool(bias_grad), algo
    )
    if unbatched and dx is not None:
        dx = dx[0]
    return dx, dw, db



def _conv_transpose_setup(input, weight, stride, padding, output_padding, groups, dilation):
    """Arrays as NCHW and the parameters of the conv2d whose input gradient this transposed
    convolution is, plus that conv2d's input shape (this op's output) and its output height and
    width, which exceed this op's input by ``output_padding // stride`` rows/columns."""
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
    _check_ndim(x, (3, 4), "input", "N, C, H, W or unbatched C, H, W")
    _check_ndim(w, 4, "weight", "in_channels, out_channels/groups, kH, kW")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose2d: padding must be an int or a pair of ints, got {padding!r}")
    stride, dilation = _pair(stride, "stride", minimum=1), _pair(dilation, "dilation", minimum=1)
    padding = _pair(padding, "padding", minimum=0)
    output_padding = _pair(output_padding, "output_padding", minimum=0)
    groups = _int(groups, "groups")
    if groups < 1 or x.shape[1] % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide the input's {x.shape[1]} channels")
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"weight of shape {w.shape} needs an input with {w.shape[0]} channels "
                         f"(weight.shape[0]), got input shape {x.shape}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(f"output_padding {output_padding} must be smaller than stride {stride} or "
                             f"dilation {dilation}")
    out = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                zip(x.shape[2:], stride, padding, dilation, w.shape[2:], output_padding))
    if min(out) < 0:
        raise ValueError(f"conv_transpose2d: the output size {out} would be negative for input {x.shape}, "
                         f"kernel {w.shape[2:]}, stride {stride}, padding {padding}, dilation {dilation}")
    conv_out = tuple(n + op // s for n, op, s in zip(x.shape[2:], output_padding, stride))
    shape = (x.shape[0], w.shape[1] * groups) + out
    if math.prod(shape) > _INT64_MAX:
        raise OverflowError(f"conv_transpose2d: the output shape {shape} (from stride {stride}, "
                            f"dilation {dilation}) has more elements than 64-bit sizes hold")
    pads = (padding[0], padding[0], padding[1], padding[1])
    return x, w, unbatched, stride, pads, dilation, groups, shape, conv_out


def _grow_to(a, hw):
    """``a`` zero-extended at the bottom/right to spatial size ``hw``."""
    if a.shape[2:] == hw:
        return a
    return np.pad(a, ((0, 0), (0, 0), (0, hw[0] - a.shape[2]), (0, hw[1] - a.shape[3])))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution ("deconvolution"), as ``torch.nn.functional.conv_transpose2d``.

    input: (N, C_in, H, W) or (C_in, H, W); weight: (C_in, C_out/groups, kH, kW); bias: (C_out,)
    or None. Output height ``(H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding
    + 1`` (likewise the width); ``output_padding`` must be smaller than ``stride`` or
    ``dilation``. It is the input gradient of :func:`conv2d` with the same weight, and runs that
    native kernel. Backward: :func:`conv_transpose2d_backward`.
    """
    x, w, unbatched, stride, pads, dilation, groups, shape, conv_out = _conv_transpose_setup(
        input, weight, stride, padding, output_padding, groups, dilation)
    if x.size == 0 or 0 in shape:  # nothing reaches the output (the kernel may not fit an empty input)
        y = np.zeros(shape, np.float32)
    else:
        # The conv2d's input is read for its shape only: calloc's untouched zero pages cost nothing.
        y, _, _ = _C.conv2d_backward(_grow_to(x, conv_out), np.zeros(shape, np.float32), w, stride, pads,
                                     dilation, groups, True, False, False, "auto")
    if bias is not None:
        b = _as_float32(bias, "bias")
        if b.shape != (shape[1],):
            raise ValueError(f"bias must have shape ({shape[1]},), got {b.shape}")
        y += b[:, None, None]
    return y[0] if unbatched else y


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of :func:`conv_transpose2d`: ``(grad_input, grad_weight, grad_bias)``, each None when
    its flag is false. grad_input is :func:`conv2d` of ``grad_output`` with the same weight; the
    weight gradient is conv2d's with ``grad_output`` as its input and ``input`` as its output gradient.
    """
    x, w, unbatched, stride, pads, dilation, groups, shape, conv_out = _conv_transpose_setup(
        input, weight, stride, padding, output_padding, groups, dilation)
    g = _as_float32(grad_output, "grad_output")
    want = shape[1:] if unbatched else shape
    if g.shape != want:
        raise ValueError(f"grad_output must have the output's shape {want}, got {g.shape}")
    if unbatched:
        g = g[None]
    grad_input = grad_weight = grad_bias = None
    empty = x.size == 0 or 0 in shape
    if input_grad and empty:
        grad_input = np.zeros(x.shape[1:] if unbatched else x.shape, np.float32)
    elif input_grad:
        # conv2d of the output reaches output_padding // stride rows/columns past the input: cut.
        grad_input = _C.conv2d(g, w, None, stride, pads, dilation, groups, "auto")
        grad_input = np.ascontiguousarray(grad_input[:, :, : x.shape[2], : x.shape[3]])
        grad_input = grad_input[0] if unbatched else grad_input
    if weight_grad and empty:
        grad_weight = np.zeros(w.shape, np.float32)
    elif weight_grad:
        _, grad_weight, _ = _C.conv2d_backward(_grow_to(x, conv_out), g, w, stride, pads, dilation, groups,
                                               False, True, False, "auto")
    if bias_grad:
        grad_bias = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    return grad_input, grad_weight, grad_bias


# ----------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------


def _flag(value, name):
    """A boolean argument (ints and strings are rejected rather than guessed)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _pool_input(input, op):
    """``input`` as float32 NCHW plus whether it came as CHW (the batch axis is added)."""
    x = _as_float32(input, "input")
    _check_ndim(x, (3, 4), f"{op}: input", "CHW or NCHW")
    return (x[None], True) if x.ndim == 3 else (x, False)


def _pool_geometry(kernel_size, stride, padding, dilation=1):
    """PyTorch's pooling arguments as int pairs; ``stride=None`` (or ``[]``) means kernel_size."""
    kernel = _pair(kernel_size, "kernel_size")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    geometry = dict(kernel_size=kernel, stride=_pair(stride, "stride"), padding=_pair(padding, "padding"),
                    dilation=_pair(dilation, "dilation"))
    _check_int64(**geometry)
    return tuple(geometry.values())


def _pool_input_shape(input, op):
    """The NCHW shape of a backward call's ``input`` (only its shape and dtype are used)."""
    x = input if isinstance(input, np.ndarray) else np.asarray(input)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{op}: input must be a float or integer array, got dtype {x.dtype}")
    _check_ndim(x, (3, 4), f"{op}: input", "CHW or NCHW")
    return ((1,) + x.shape, True) if x.ndim == 3 else (x.shape, False)


def _pool_grad(grad_output, unbatched, op):
    g = _as_float32(grad_output, "grad_output")
    want = 3 if unbatched else 4
    if g.ndim != want:
        raise ValueError(f"{op}: grad_output must be {want}-D like the output, got shape {g.shape}")
    return g[None] if unbatched else g


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling over an (N, C, H, W) or (C, H, W) array, as ``torch.nn.functional.max_pool2d``.

    ``stride`` defaults to ``kernel_size``; ``padding`` (implicit -inf) may be at most half of
    ``kernel_size`` (PyTorch's CPU rule, whatever the dilation), and no window may consist of
    padding only (possible with dilation; PyTorch returns an out-of-plane index there). With ``ceil_mode`` the output size rounds
    up, but a window that would start in the right/bottom padding is dropped. A NaN in a window is
    the window's result (its index is the last NaN's position); a window of -inf gives -inf with
    the index of an element in the window. ``H == 0`` or ``W == 0`` gives an empty output
    dimension (PyTorch rejects such input).

    Returns the float32 output, or ``(output, indices)`` when ``return_indices``: int64 indices
    ``h * W + w`` of each maximum within its (n, c) plane, as PyTorch returns them.
    Backward: :func:`max_pool2d_backward` with these indices.
    """
    x, unbatched = _pool_input(input, "max_pool2d")
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation)
    out, indices = _C.max_pool2d(x, kernel, stride, padding, dilation, _flag(ceil_mode, "ceil_mode"),
                                 _flag(return_indices, "return_indices"))
    if unbatched:
        out = out[0]
        indices = None if indices is None else indices[0]
    return (out, indices) if indices is not None else out


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each ``grad_output`` element is added to the input position its ``indices`` entry names
    (overlapping windows accumulate). ``indices`` must be the int64 array the forward returned:
    its shape must equal ``grad_output``'s (else ``ValueError``) and every entry must lie within
    the H*W plane (else ``IndexError``); ``input`` only supplies the shape. The other arguments
    must be the forward's.
    """
    op = "max_pool2d_backward"
    shape, unbatched = _pool_input_shape(input, op)
    g = _pool_grad(grad_output, unbatched, op)
    if not isinstance(indices, np.ndarray) or indices.dtype != np.int64:
        dtype = indices.dtype if isinstance(indices, np.ndarray) else type(indices).__name__
        raise TypeError(f"{op}: indices must be the int64 array max_pool2d returned, got {dtype}")
    idx = np.ascontiguousarray(indices[None] if unbatched else indices)
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation)
    grad_input = _C.max_pool2d_backward(g, idx, shape, kernel, stride, padding, dilation,
                                        _flag(ceil_mode, "ceil_mode"))
    return grad_input[0] if unbatched else grad_input


def _window_counts(size, out, kernel, stride, pad):
    """Along one axis: the number of input elements in each of ``out`` pooling windows."""
    start = np.arange(out) * stride - pad
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


def _divisor_scale(shape, out_shape, kernel, stride, padding, divisor_override):
    """Per output window: element count / ``divisor_override``, which turns the native average
    over the window's input elements into the sum over the window divided by the override."""
    divisor = _int(divisor_override, "divisor_override")
    if divisor == 0:
        raise ValueError("avg_pool2d: divisor_override must be non-zero")
    rows, cols = (_window_counts(shape[i], out_shape[i], kernel[i - 2], stride[i - 2], padding[i - 2])
                  for i in (2, 3))
    return (rows[:, None] * cols[None, :] / divisor).astype(np.float32)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling over an (N, C, H, W) or (C, H, W) array, as ``torch.nn.functional.avg_pool2d``.

    The divisor is PyTorch's: with ``count_include_pad`` the window clipped to the padded input
    (zero padding counts, a ``ceil_mode`` overhang past the padding does not); without it, the
    number of input elements in the window; ``divisor_override`` (a non-zero int) replaces both.
    ``padding`` may be at most half the kernel. Backward: :func:`avg_pool2d_backward`.
    """
    x, unbatched = _pool_input(input, "avg_pool2d")
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    include_pad = _flag(count_include_pad, "count_include_pad") and divisor_override is None
    out = _C.avg_pool2d(x, kernel, stride, padding, _flag(ceil_mode, "ceil_mode"), include_pad)
    if divisor_override is not None:
        out *= _divisor_scale(x.shape, out.shape, kernel, stride, padding, divisor_override)
    return out[0] if unbatched else out


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each ``grad_output`` element, divided by its window's divisor, is added to every input element
    of the window. ``input`` only supplies the shape; the other arguments must be the forward's.
    """
    op = "avg_pool2d_backward"
    shape, unbatched = _pool_input_shape(input, op)
    g = _pool_grad(grad_output, unbatched, op)
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    include_pad = _flag(count_include_pad, "count_include_pad") and divisor_override is None
    if divisor_override is not None:
        g = g * _divisor_scale(shape, g.shape, kernel, stride, padding, divisor_override)
    grad_input = _C.avg_pool2d_backward(g, shape, kernel, stride, padding,
                                        _flag(ceil_mode, "ceil_mode"), include_pad)
    return grad_input[0] if unbatched else grad_input


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


def _bn_input(input, op):
    x = _as_float32(input, "input")
    _check_ndim(x, (2, 3, 4, 5), f"{op}: input", "N, C, ...")
    return x


def _bn_param(value, name, channels):
    """Optional per-channel array (weight, bias, running stats read in eval mode)."""
    if value is None:
        return None
    a = _as_float32(value, name)
    if a.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) to match the input's channels, "
                         f"got {a.shape}")
    return a


def _bn_eps(eps):
    eps = _float(eps, "eps")
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    return eps


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation of an (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W) array, as
    ``torch.nn.functional.batch_norm``: ``y = (x - mean) / sqrt(var + eps) * weight + bias``
    per channel (weight and bias default to 1 and 0).

    ``training=True`` normalises with the batch statistics (biased variance; more than one value
    per channel is needed, else ``ValueError``) and, when given, updates ``running_mean`` and
    ``running_var`` in place: ``r = (1 - momentum) * r + momentum * batch_stat`` with the
    unbiased variance. They must then be writeable float32 C-contiguous arrays of shape (C,)
    (else ``TypeError``/``ValueError``), or both ``None`` for no update. An empty batch returns
    an empty output and leaves them untouched. ``training=False`` uses the running statistics,
    which are then required. Statistics are accumulated in double precision around a per-channel
    shift, so inputs with large means (1e7) normalise accurately; constant input gives ``bias``.
    Backward: :func:`batch_norm_backward`.
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, False,
                       "batch_norm")


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
    """``relu(batch_norm(...))`` in one pass over the data (the arguments are
    :func:`batch_norm`'s): the normalised values are clamped as they are written, with
    :func:`relu`'s formula, instead of in a second pass. Backward:
    :func:`batch_norm_relu_backward`, given this call's output."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, True,
                       "batch_norm_relu")


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, relu, op):
    x = _bn_input(input, op)
    channels = x.shape[1]
    training = _flag(training, "training")
    momentum = _float(momentum, "momentum")
    eps = _bn_eps(eps)
    w = _bn_param(weight, "weight", channels)
    b = _bn_param(bias, "bias", channels)
    if training:
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must both be given or both be None")
        if running_mean is not None:
            running_mean = _state_array(running_mean, "running_mean", (channels,))
            running_var = _state_array(running_var, "running_var", (channels,))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required when training=False")
        running_mean = _bn_param(running_mean, "running_mean", channels)
        running_var = _bn_param(running_var, "running_var", channels)
    return _C.batch_norm(x, running_mean, running_var, w, b, training, momentum, eps, relu=relu)


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, training=True,
                        eps=1e-5):
    """Gradients of :func:`batch_norm`: ``(grad_input, grad_weight, grad_bias)``.

    ``grad_weight = sum(grad_output * x_hat)`` and ``grad_bias = sum(grad_output)`` per channel;
    both are ``None`` when ``weight`` is ``None`` (no affine parameters). With ``training=True``
    the batch statistics are recomputed from ``input`` — no state is kept between the forward
    and backward calls, so pass the same ``input`` — and the running statistics are ignored
    (they may be ``None``). With ``training=False`` the running statistics are constants of the
    forward and are required.
    """
    return _batch_norm_backward(grad_output, input, None, running_mean, running_var, weight, training,
                                eps, "batch_norm_backward")


def batch_norm_relu_backward(grad_output, input, output, running_mean, running_var, weight=None,
                             training=True, eps=1e-5):
    """Gradients of :func:`batch_norm_relu`, ``(grad_input, grad_weight, grad_bias)``, from its
    ``input`` and its ``output``: ``grad_output`` is taken through the ReLU (0 where ``output``
    is <= 0, as :func:`relu_backward`) within batch norm's own passes. Otherwise as
    :func:`batch_norm_backward`."""
    return _batch_norm_backward(grad_output, input, output, running_mean, running_var, weight,
                                training, eps, "batch_norm_relu_backward")


def _batch_norm_backward(grad_output, input, output, running_mean, running_var, weight, training, eps,
                         op):
    x = _bn_input(input, op)
    channels = x.shape[1]
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"{op}: grad_output must have the input's shape {x.shape}, got {g.shape}")
    if output is not None:
        output = _as_float32(output, "output")
        if output.shape != x.shape:
            raise ValueError(f"{op}: output must have the input's shape {x.shape}, got {output.shape}")
    training = _flag(training, "training")
    eps = _bn_eps(eps)
    w = _bn_param(weight, "weight", channels)
    if training:
        running_mean = running_var = None
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required when training=False")
        running_mean = _bn_param(running_mean, "running_mean", channels)
        running_var = _bn_param(running_var, "running_var", channels)
    return _C.batch_norm_backward(g, x, running_mean, running_var, w, training, eps, relu_output=output)


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


def add(input, other):
    """``input + other`` for two arrays of one shape (no broadcasting), on cnnkit's threads: a
    residual connection's sum, and the sum of its two branches' gradients."""
    a, b = _same_shape_pair(input, other, "add")
    return _C.add(a, b)


def add_relu(input, other):
    """``relu(input + other)`` in one pass, for two arrays of one shape: a residual connection
    and the ReLU after it. Backward: :func:`relu_backward` given this call's output (it is > 0
    exactly where the sum was), then the same gradient for both inputs."""
    a, b = _same_shape_pair(input, other, "add_relu")
    return _C.add(a, b, relu=True)


def _same_shape_pair(input, other, op):
    a, b = _as_float32(input, "input"), _as_float32(other, "other")
    if a.shape != b.shape:
        raise ValueError(f"{op}: input and other must have one shape, got {a.shape} and {b.shape}")
    return a, b


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
    _check_ndim(w, (0, 1), "weight", "(), (1,) or (C,) with C = input.shape[1]")
    return x, w


def prelu(input, weight):
    """``x`` where ``x > 0``, else ``weight * x``; ``weight`` is 0-d, (1,) or (C,), C = input.shape[1]."""
    x, w = _prelu_arrays(input, weight)
    return _C.prelu(x, w.reshape(-1))


def prelu_backward(grad_output, input, weight):
    """Gradients of :func:`prelu`: ``(grad_input, grad_weight)``, grad_weight shaped like ``weight``."""
    x, w = _prelu_arrays(input, weight)
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"grad_output shape {g.shape} must equal input shape {x.shape}")
    grad_input, grad_weight = _C.prelu_backward(g, x, w.reshape(-1))
    return grad_input, grad_weight.reshape(w.shape)


def _hardtanh_bounds(min_val, max_val):
    lo, hi = _float(min_val, "min_val"), _float(max_val, "max_val")
    if not lo <= hi:
        raise ValueError(f"hardtanh: max_val ({hi}) must be >= min_val ({lo})")
    return lo, hi


def _activation_maybe_inplace(name, input, inplace, **params):
    """The activation of ``input``, or written into ``input`` itself when ``inplace``: the input
    must then be a writeable float32 C-contiguous array, never a converted copy the caller does
    not see."""
    if not _flag(inplace, "inplace"):
        return _activation(name, input, **params)
    x = _state_array(input, "input", np.shape(input))
    return _C.activation(name, x, out=x, **params)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``x`` clipped to [min_val, max_val]; NaN stays NaN. ``inplace`` as in :func:`dropout`."""
    lo, hi = _hardtanh_bounds(min_val, max_val)
    return _activation_maybe_inplace("hardtanh", input, inplace, min_val=lo, max_val=hi)


def hardtanh_backward(grad_output, input, min_val=-1.0, max_val=1.0):
    """Gradient of :func:`hardtanh`: ``grad_output`` where ``min_val < x < max_val``, else 0 (at the
    bounds and for NaN too, like PyTorch)."""
    lo, hi = _hardtanh_bounds(min_val, max_val)
    return _activation_backward("hardtanh", grad_output, input, min_val=lo, max_val=hi)


def _gelu_kind(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


def gelu(input, approximate="none"):
    """Gaussian error linear unit: ``x * Phi(x)`` (Phi the standard normal CDF), or with
    ``approximate="tanh"`` ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    return _activation(_gelu_kind(approximate), input)


def gelu_backward(grad_output, input, approximate="none"):
    """Gradient of :func:`gelu`: ``grad_output * (Phi(x) + x phi(x))``, or the tanh form's
    ``s + 2 x s (1 - s) u'(x)`` with s = sigmoid(2u)."""
    return _activation_backward(_gelu_kind(approximate), grad_output, input)


def silu(input, inplace=False):
    """``x * sigmoid(x)`` (swish); ``-inf`` gives NaN, as PyTorch. ``inplace`` as in :func:`dropout`."""
    return _activation_maybe_inplace("silu", input, inplace)


def silu_backward(grad_output, input):
    """Gradient of :func:`silu`: ``grad_output * (s + x s (1 - s))``, s = sigmoid(x), with
    s (1 - s) computed without the cancellation of 1 - s for large x."""
    return _activation_backward("silu", grad_output, input)


def _maxout_pieces(x, pool_size, dim):
    """``x`` viewed with ``dim`` split into (units, pool_size): unit j owns channels j*k .. j*k + k - 1."""
    k = _int(pool_size, "pool_size")
    d = _int(dim, "dim")
    if k < 1:
        raise ValueError(f"pool_size must be >= 1, got {k}")
    if not -x.ndim <= d < x.ndim:
        raise ValueError(f"dim={d} is out of range for input of shape {x.shape}")
    d %= x.ndim
    if x.shape[d] % k:
        raise ValueError(f"input.shape[{d}]={x.shape[d]} is not a multiple of pool_size={k}")
    return x.reshape(x.shape[:d] + (x.shape[d] // k, k) + x.shape[d + 1:]), d + 1


def maxout(input, pool_size, dim=1):
    """Maxout (Goodfellow et al., 2013): the maximum over each group of ``pool_size`` consecutive
    channels along ``dim``, which shrinks by that factor. A NaN piece makes its unit NaN."""
    pieces, axis = _maxout_pieces(_as_float32(input, "input"), pool_size, dim)
    return pieces.max(axis=axis)


def maxout_backward(grad_output, input, pool_size, dim=1):
    """Gradient of :func:`maxout`: each unit's gradient goes to its winning piece (the first
    on a tie, the NaN if there is one), every other piece gets zero."""
    pieces, axis = _maxout_pieces(_as_float32(input, "input"), pool_size, dim)
    g = _as_float32(grad_output, "grad_output")
    out_shape = pieces.shape[:axis] + pieces.shape[axis + 1:]
    if g.shape != out_shape:
        raise ValueError(f"grad_output shape {g.shape} must equal maxout's output shape {out_shape}")
    grad = np.zeros(pieces.shape, np.float32)
    winners = np.expand_dims(pieces.argmax(axis=axis), axis)
    np.put_along_axis(grad, winners, np.expand_dims(g, axis), axis=axis)
    return grad.reshape(np.shape(input))


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


def _softmax_dtype(input, dim, dtype, log):
    """softmax or log_softmax with PyTorch's ``dtype``: the input is cast to it first and the
    result has it. float32 runs the native kernel, float64 NumPy in float64, float16 the native
    kernel on the float16-rounded input."""
    if dtype is None:
        return _C.softmax(_as_float32(input, "input"), _int(dim, "dim"), log)
    # torch dtypes (torch.float64) name the NumPy ones.
    name = str(dtype).removeprefix("torch.") if type(dtype).__module__ == "torch" else dtype
    try:
        dt = np.dtype(name)
    except TypeError:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}") from None
    if dt not in (np.float16, np.float32, np.float64):
        raise TypeError(f"dtype must be float16, float32 or float64, got {dt}")
    x = _as_float32(input, "input")
    if dt != np.float64:
        return _C.softmax(x.astype(dt).astype(np.float32), _int(dim, "dim"), log).astype(dt)
    axis = _dim(dim, x.ndim, "dim")
    x = x.astype(np.float64)
    if x.size == 0:
        return x
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf lines give NaN, as PyTorch
        shifted = x - x.max(axis=axis, keepdims=True)
        total = np.exp(shifted).sum(axis=axis, keepdims=True)
        return shifted - np.log(total) if log else np.exp(shifted) / total


def softmax(input, dim=-1, *, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, computed with the maximum subtracted (no overflow).

    ``dtype`` (NumPy or torch float dtype) casts the input first and is the result's dtype.
    """
    return _softmax_dtype(input, dim, dtype, False)


def softmax_backward(grad_output, output, dim=-1):
    """Gradient of :func:`softmax` from the forward *output* y: ``y * (g - sum(g * y))``."""
    return _C.softmax_backward(
        _as_float32(grad_output, "grad_output"), _as_float32(output, "output"), _int(dim, "dim"), False
    )


def log_softmax(input, dim=-1, *, dtype=None):
    """x - log(sum(exp(x))) along ``dim``, finite for any finite input. ``dtype`` as in :func:`softmax`."""
    return _softmax_dtype(input, dim, dtype, True)


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
    return x, target, _reduction_ignore_index(reduction, ignore_index)


def _reduction_ignore_index(reduction, ignore_index):
    """Check ``reduction``; ``ignore_index`` as an int that fits int64."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    ignore_index = _int(ignore_index, "ignore_index")
    if not _INT64.min <= ignore_index <= _INT64.max:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    return ignore_index


def _legacy_reduction(size_average, reduce, reduction):
    """The reduction PyTorch's deprecated ``size_average``/``reduce`` flags ask for, when given
    (with PyTorch's warning); otherwise ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        result = "none"
    else:
        result = "sum" if size_average is False else "mean"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{result}' "
                  "instead.", UserWarning, stacklevel=3)
    return result


class _ClassLoss:
    """A loss of class scores x of shape (N, C, d1, ...) (or (C,)) written as
    ``loss[n, d...] = -sum_c coef[n, c, d...] * score[n, c, d...]`` with the score log_softmax(x)
    for cross-entropy and x itself for nll_loss, and ``divisor`` the denominator of "mean".
    Class-index targets give coef = w[t] (1 - eps) one_hot(t) + eps w / C (zero where ignored)
    and divisor = sum of w[t]; probability targets coef = w (t (1 - eps) + eps / C) and
    divisor = N * d1 * ... (PyTorch's definitions)."""

    def __init__(self, op, input, target, weight, ignore_index, reduction, label_smoothing):
        x = _as_float32(input, "input")
        if x.ndim == 0:
            raise ValueError(f"{op}: input must have a class dimension: (N, C, ...) or (C,), got a scalar")
        ignore_index = _reduction_ignore_index(reduction, ignore_index)
        eps = _float(label_smoothing, "label_smoothing")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
        self.unbatched = x.ndim == 1
        self.x = x[None] if self.unbatched else x
        self.reduction = reduction
        classes = self.x.shape[1]
        along_classes = (1, classes) + (1,) * (self.x.ndim - 2)
        w = np.ones(classes)
        if weight is not None:
            w = _as_float32(weight, "weight").astype(np.float64)
            if w.shape != (classes,):
                raise ValueError(f"weight must have shape ({classes},), one per class, got {w.shape}")
        t = target if isinstance(target, np.ndarray) else np.asarray(target)
        if t.dtype.kind == "f" and op == "cross_entropy" and t.shape == x.shape:
            if ignore_index >= 0:
                raise ValueError("ignore_index is not supported with class-probability targets, "
                                 f"got ignore_index={ignore_index}")
            t = t.astype(np.float64)
            self.coef = w.reshape(along_classes) * ((1.0 - eps) * (t[None] if self.unbatched else t)
                                                    + eps / classes)
            self.divisor = self.x.size / classes if classes else 0
            return
        if t.dtype.kind not in "iu":
            probabilities = " (or float class probabilities of the input's shape)" * (op == "cross_entropy")
            raise TypeError(f"target must be an integer array of class indices{probabilities}, "
                            f"got dtype {t.dtype} and shape {t.shape} for input of shape {x.shape}")
        want = () if self.unbatched else x.shape[:1] + x.shape[2:]
        if t.shape != want:
            raise ValueError(f"target must have shape {want} (input's without the class dimension) for "
                             f"input of shape {x.shape}, got {t.shape}")
        if t.dtype.kind == "u" and t.size and int(t.max()) > _INT64.max:
            raise IndexError(f"target label {int(t.max())} is out of range [0, {classes})")
        t = t.astype(np.int64).reshape(self.x.shape[:1] + self.x.shape[2:])
        valid = t != ignore_index
        bad = valid & ((t < 0) | (t >= classes))
        if bad.any():
            raise IndexError(f"target label {int(t[bad][0])} is out of range [0, {classes})")
        safe = np.where(valid, t, 0)
        target_weight = w[safe] * valid
        self.coef = np.zeros(self.x.shape)
        np.put_along_axis(self.coef, safe[:, None], ((1.0 - eps) * target_weight)[:, None], axis=1)
        if eps:
            self.coef += (eps / classes) * w.reshape(along_classes) * valid[:, None]
        self.divisor = float(target_weight.sum())

    def forward(self, score):
        """The reduced loss for these scores (x or log_softmax(x)); a float, or float32 per element."""
        with np.errstate(invalid="ignore"):
            # Only the coefficients' classes count: a -inf score of another class is not 0 * -inf.
            per = -np.where(self.coef == 0, 0.0, self.coef * score).sum(axis=1)
            if self.reduction == "none":
                return (per[0] if self.unbatched else per).astype(np.float32)
            total = float(per.sum())
            if self.reduction == "sum":
                return total
            return total / self.divisor if self.divisor else float("nan")

    def scaled_coef(self, grad_output):
        """``coef`` times the upstream gradient of each element's loss (``/ divisor`` for "mean")."""
        g = np.asarray(grad_output, dtype=np.float64)
        shape = self.x.shape[:1] + self.x.shape[2:]
        if self.reduction == "none":
            if g.ndim and g.shape != (shape[1:] if self.unbatched else shape):
                raise ValueError(f"grad_output must be a scalar or have the loss's shape "
                                 f"{shape[1:] if self.unbatched else shape}, got {g.shape}")
            g = np.broadcast_to(g.reshape(shape) if g.ndim else g, shape)[:, None]
        elif g.size != 1:
            raise ValueError(f"grad_output must be a scalar for reduction={self.reduction!r}, "
                             f"got shape {g.shape}")
        else:
            g = g.reshape(())
            if self.reduction == "mean":
                # Nothing counted (every target ignored): no gradient, as the native kernel.
                g = g / self.divisor if self.divisor else np.zeros(())
        return self.coef * g

    def result(self, grad):
        grad = grad.astype(np.float32)
        return grad[0] if self.unbatched else grad


def _native_cross_entropy(x, t, weight, label_smoothing):
    """Whether the native kernel can run this call: (N, C) logits, (N,) class indices, no weight,
    no smoothing."""
    return (weight is None and isinstance(label_smoothing, (int, float)) and label_smoothing == 0
            and x.ndim == 2 and t.ndim == 1 and t.dtype.kind in "iu")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    ``input``: logits (N, C), (N, C, d1, ...) or (C,); ``target``: class indices of the input's
    shape without C (integers; a label outside [0, C) raises IndexError), or class
    probabilities of the input's shape (floats). ``weight`` (C,) weighs each class;
    ``ignore_index`` marks targets that contribute nothing (class indices only);
    ``label_smoothing`` mixes the target with the uniform distribution. ``"mean"`` divides by
    the summed weights of the counted targets (NaN when there are none, like PyTorch), or by the
    number of elements for probability targets. Returns a float for ``"mean"``/``"sum"``, a
    float32 array for ``"none"``. ``size_average``/``reduce`` are PyTorch's deprecated
    spellings of ``reduction``. (N, C) logits with (N,) labels, no weight and no smoothing run
    the native kernel; the rest log_softmax natively and the sum in float64 NumPy.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    x = _as_float32(input, "input")
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if _native_cross_entropy(x, t, weight, label_smoothing):
        x, t, ignore_index = _cross_entropy_args(x, t, reduction, ignore_index)
        out = _C.cross_entropy(x, t, reduction, ignore_index)
        return out if reduction == "none" else float(out)
    loss = _ClassLoss("cross_entropy", x, t, weight, ignore_index, reduction, label_smoothing)
    return loss.forward(log_softmax(loss.x, 1).astype(np.float64))


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, size_average=None, ignore_index=-100,
                           reduce=None, reduction="mean", label_smoothing=0.0):
    """Gradient of :func:`cross_entropy` w.r.t. the logits, of the input's shape:
    ``softmax(x) * sum_c(coef) - coef`` with each element's coefficients scaled by its upstream
    gradient.

    ``grad_output`` is a scalar for ``"mean"``/``"sum"``; for ``"none"`` the loss's shape (or a
    scalar for all). Ignored targets get zeros. The other arguments are the forward's.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    x = _as_float32(input, "input")
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if _native_cross_entropy(x, t, weight, label_smoothing):
        x, t, ignore_index = _cross_entropy_args(x, t, reduction, ignore_index)
        g = _as_float32(grad_output, "grad_output")
        if reduction == "none" and g.ndim == 0:
            g = np.full(x.shape[:1], g, np.float32)
        return _C.cross_entropy_backward(x, t, g, reduction, ignore_index)
    loss = _ClassLoss("cross_entropy", x, t, weight, ignore_index, reduction, label_smoothing)
    coef = loss.scaled_coef(grad_output)
    return loss.result(softmax(loss.x, 1) * coef.sum(axis=1, keepdims=True) - coef)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``:
    ``-weight[t] * input[n, t]`` per element, for input (N, C), (N, C, d1, ...) or (C,) and
    class indices ``target`` of the input's shape without C. ``weight``, ``ignore_index``,
    ``reduction`` (``"mean"`` divides by the summed weights of the counted targets) and the
    deprecated ``size_average``/``reduce`` as in :func:`cross_entropy`; ``nll_loss(log_softmax(x,
    1), t)`` equals ``cross_entropy(x, t)``.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    loss = _ClassLoss("nll_loss", input, target, weight, ignore_index, reduction, 0.0)
    return loss.forward(loss.x.astype(np.float64))


def nll_loss_backward(input, target, grad_output=1.0, weight=None, size_average=None, ignore_index=-100,
                      reduce=None, reduction="mean"):
    """Gradient of :func:`nll_loss` w.r.t. its input: ``-weight[t]`` (times the upstream gradient,
    divided by the summed weights for ``"mean"``) at each target class, 0 elsewhere."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    loss = _ClassLoss("nll_loss", input, target, weight, ignore_index, reduction, 0.0)
    return loss.result(-loss.scaled_coef(grad_output))


# Any array in, the same kind out (cnnkit._arrays), for every public op of this module. Keep this
# the module's last statement: an op defined below it would take only NumPy arrays.
_arrays.wrap_public_functions(globals(), __name__)
