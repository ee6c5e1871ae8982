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
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return x  # the common case, without np.asarray's overhead
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


def _pair(value, name, minimum=None):
    """An int or a pair of ints as a 2-tuple, each at least ``minimum``."""
    if type(value) is int and (minimum is None or value >= minimum):
        return (value, value)  # the common case, checked without the general path's calls
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
    by processing chunks of output positions) or ``"auto"`` (per shape and
    ISA, whichever measured faster; ``cnnkit.build_info()["kernels"]`` shows
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


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling over an (N, C, H, W) or (C, H, W) array, as ``torch.nn.functional.avg_pool2d``.

    The divisor is PyTorch's: with ``count_include_pad`` the window clipped to the padded input
    (zero padding counts, a ``ceil_mode`` overhang past the padding does not); without it, the
    number of input elements in the window. ``padding`` may be at most half the kernel.
    Backward: :func:`avg_pool2d_backward`.
    """
    x, unbatched = _pool_input(input, "avg_pool2d")
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    out = _C.avg_pool2d(x, kernel, stride, padding, _flag(ceil_mode, "ceil_mode"),
                        _flag(count_include_pad, "count_include_pad"))
    return out[0] if unbatched else out


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each ``grad_output`` element, divided by its window's divisor, is added to every input element
    of the window. ``input`` only supplies the shape; the other arguments must be the forward's.
    """
    op = "avg_pool2d_backward"
    shape, unbatched = _pool_input_shape(input, op)
    g = _pool_grad(grad_output, unbatched, op)
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    grad_input = _C.avg_pool2d_backward(g, shape, kernel, stride, padding,
                                        _flag(ceil_mode, "ceil_mode"),
                                        _flag(count_include_pad, "count_include_pad"))
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
    x = _bn_input(input, "batch_norm")
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
    return _C.batch_norm(x, running_mean, running_var, w, b, training, momentum, eps)


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
    op = "batch_norm_backward"
    x = _bn_input(input, op)
    channels = x.shape[1]
    g = _as_float32(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"{op}: grad_output must have the input's shape {x.shape}, got {g.shape}")
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
    return _C.batch_norm_backward(g, x, running_mean, running_var, w, training, eps)


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
