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
# composite ops written in NumPy on top of the native ones (adaptive pooling,
# local response norm, dropout, regression and margin losses)
# ----------------------------------------------------------------------------


def _adaptive_windows(size, out):
    """PyTorch's adaptive windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _adaptive_args(input, output_size):
    x = _as_float32(input, "input")
    _check_ndim(x, 4, "input", "N, C, H, W")
    oh, ow = (
        (x.shape[2] if s is None else s)
        for s in (output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size))
    )
    oh, ow = _pair((oh, ow), "output_size", minimum=1)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"input must have non-empty H and W for adaptive pooling, got {x.shape}")
    return x, oh, ow


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to ``output_size`` (int or pair; None keeps that size); 1 = global average."""
    x, oh, ow = _adaptive_args(input, output_size)
    out = np.empty(x.shape[:2] + (oh, ow), np.float32)
    for i, (h0, h1) in enumerate(_adaptive_windows(x.shape[2], oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(x.shape[3], ow)):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3), dtype=np.float64)
    return out


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d`: each output's gradient spread evenly over its window."""
    x, oh, ow = _adaptive_args(input, output_size)
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape[:2] + (oh, ow):
        raise ValueError(f"grad_output must have shape {x.shape[:2] + (oh, ow)}, got {g.shape}")
    dx = np.zeros(x.shape, np.float32)
    for i, (h0, h1) in enumerate(_adaptive_windows(x.shape[2], oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(x.shape[3], ow)):
            dx[:, :, h0:h1, w0:w1] += (g[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


def _lrn_args(input, size, alpha, beta, k):
    x = _as_float32(input, "input")
    if x.ndim < 3:
        raise ValueError(f"input must have at least 3 dimensions (N, C, ...), got shape {x.shape}")
    size = _int(size, "size")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return x, size, _float(alpha, "alpha"), _float(beta, "beta"), _float(k, "k")


def _lrn_window_sum(v, size):
    """Sum over channels [c - size//2, c + (size-1)//2] (PyTorch's window), zero outside."""
    c = v.shape[1]
    padded = np.zeros((v.shape[0], c + size - 1) + v.shape[2:], np.float64)
    padded[:, size // 2 : size // 2 + c] = v
    csum = np.cumsum(padded, axis=1)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    return csum[:, size : size + c] - csum[:, :c]


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """``x / (k + alpha/size * sum of x^2 over size neighbouring channels) ** beta``."""
    x, size, alpha, beta, k = _lrn_args(input, size, alpha, beta, k)
    x64 = x.astype(np.float64)
    scale = k + alpha / size * _lrn_window_sum(x64 * x64, size)
    return (x64 * scale**-beta).astype(np.float32)


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of :func:`local_response_norm` with respect to its input."""
    x, size, alpha, beta, k = _lrn_args(input, size, alpha, beta, k)
    g = _as_float32(grad_output, "grad_output").astype(np.float64)
    if g.shape != x.shape:
        raise ValueError(f"grad_output must have shape {x.shape}, got {g.shape}")
    x64 = x.astype(np.float64)
    scale = k + alpha / size * _lrn_window_sum(x64 * x64, size)
    # Channel j feeds the windows of channels c in [j - (size-1)//2, j + size//2]:
    # the transposed window, i.e. the same sum on the channel-reversed array.
    inner = g * x64 * scale ** (-beta - 1)
    spread = _lrn_window_sum(inner[:, ::-1], size)[:, ::-1]
    dx = g * scale**-beta - 2.0 * alpha * beta / size * x64 * spread
    return dx.astype(np.float32)


def dropout(input, p=0.5, training=True, *, generator=None, return_mask=False):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    Identity when ``training`` is False. Random draws come from ``generator`` or
    cnnkit's seeded default. ``return_mask=True`` also returns the float32 mask
    (0 or 1/(1-p)) that :func:`dropout_backward` takes.
    """
    from .random import default_generator

    x = _as_float32(input, "input")
    p = _float(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        mask = np.ones(x.shape, np.float32)
    elif p == 1.0:
        mask = np.zeros(x.shape, np.float32)
    else:
        rng = generator or default_generator()
        mask = (rng.random(x.shape, dtype=np.float32) >= p).astype(np.float32) * np.float32(1.0 / (1.0 - p))
    out = x * mask
    return (out, mask) if return_mask else out


def dropout_backward(grad_output, mask, p=0.5):
    """Gradient of :func:`dropout` given the mask it returned."""
    g = _as_float32(grad_output, "grad_output")
    mask = _as_float32(mask, "mask")
    if g.shape != mask.shape:
        raise ValueError(f"grad_output shape {g.shape} does not match mask shape {mask.shape}")
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
