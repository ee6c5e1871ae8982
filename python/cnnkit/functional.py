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


def _conv_setup(input, weight, stride, padding, dilation, groups, algo):
    """Converted arrays and normalised parameters shared by conv2d and its backward."""
    x = _as_float32(input, "input")
    w = _as_float32(weight, "weight")
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
    for name, values in (("stride", stride), ("padding", pads), ("dilation", dilation), ("groups", (groups,))):
        if max(values) > _INT64_MAX:
            raise OverflowError(f"{name} {values} does not fit in a 64-bit integer")
    return x, w, stride, pads, dilation, groups


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algo="auto"):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    input: (N, C, H, W) or unbatched (C, H, W); weight: (out, C/groups, kH, kW);
    bias: (out,) or None. ``stride`` and ``dilation`` are an int or a pair;
    ``padding`` an int, a pair, ``"valid"`` (0) or ``"same"`` (output size =
    input size; stride must be 1; an odd total padding puts the extra
    row/column at the bottom/right). Returns (N, out, Ho, Wo) float32 with
    Ho = (H + pad_top + pad_bottom - dilation*(kH-1) - 1) // stride + 1.

    ``algo``: ``"direct"`` (no column matrix: for stride 1 on AVX2/AVX-512
    CPUs a vectorised kernel over zero-padded rows, else plain loops),
    ``"im2col"`` (column matrix + SGEMM, workspace bounded to 64 MiB by
    processing chunks of output positions) or ``"auto"`` (the vectorised
    direct kernel for stride 1 except an unpadded 1x1, which is one GEMM;
    otherwise im2col when C/groups*kH*kW >= 32 and out/groups >= 4, else
    direct). All give the same result within float32 rounding. NaN and Inf in
    the input propagate to every output that reads them. Taps that fall in
    the zero padding contribute exactly 0 in the plain direct loops but 0*w
    in im2col and the vectorised direct kernel, so an infinite or NaN
    *weight* turns padded border outputs into NaN with those two.

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
    loops, or GEMM + col2im for the input gradient and GEMM against the
    column matrix (summed over the batch) for the weight gradient.
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


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------
