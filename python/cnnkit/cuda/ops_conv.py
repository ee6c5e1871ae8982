"""conv2d on CUDA arrays, with the signatures of its ``cnnkit.functional`` twins.

``algo`` takes the CPU's names and one more:

- ``"direct"``: one output element per thread (the definition the others are tested against);
- ``"im2col"``: per image, the column matrix in scratch from the caller's allocator, then
  cnnkit's tiled SGEMM (a 1x1 layer at stride 1 without padding multiplies its input directly);
- ``"implicit_gemm"``: the tiled SGEMM reading the column matrix straight from the input (no
  scratch); the CPU path has no such kernel and refuses the name;
- ``"auto"``: for the forward pass and the input gradient, direct for layers with one input
  channel per group (depthwise), im2col for those 1x1 layers, the implicit GEMM otherwise; the
  implicit GEMM for the weight gradient (untimed rules: no GPU has measured them yet).

All of them use float32 arithmetic only (no TF32) and no atomics: a result is the same on every
run. Taps that fall in the zero padding contribute exactly 0 in the direct kernels and 0*w in
the GEMM forms, as on the CPU.
"""

import sys

from .. import _cuda
from ..functional import _check_int64, _conv_padding, _int, _pair
from ._device import _is_torch, device_index, empty, is_cuda_array, stream_of

__all__ = ["conv2d", "conv2d_backward"]

_ALGOS = ("auto", "direct", "im2col", "implicit_gemm")


def _where(x):
    if is_cuda_array(x):
        return f"cuda:{device_index(x)}"
    return f"the CPU ({type(x).__module__}.{type(x).__name__})"


def _device_operand(x, name, ndims, layout, like=None):
    """``x`` checked as a float32 CUDA array on ``like``'s device with one of ``ndims`` dimensions
    (any number when None)."""
    if not is_cuda_array(x):
        other = "" if like is None else f" like input (on {_where(like)})"
        raise TypeError(f"{name} must be a CUDA array{other}, got an array on {_where(x)}")
    if like is not None and device_index(x) != device_index(like):
        raise ValueError(f"{name} is on {_where(x)} but input is on {_where(like)}")
    dtype = str(x.dtype).removeprefix("torch.")
    if dtype != "float32":
        raise TypeError(f"{name} must be float32 on the GPU, got {dtype}")
    if ndims is not None and x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must be {want}-D ({layout}), got shape {tuple(x.shape)}")
    return x


def _contiguous(x):
    """``x`` itself when C-contiguous, else a C-contiguous copy from its own library."""
    if _is_torch(x):
        return x.contiguous()
    return sys.modules["cupy"].ascontiguousarray(x)


def _algo(algo):
    if not isinstance(algo, str) or algo not in _ALGOS:
        raise ValueError(f"algo must be one of {_ALGOS}, got {algo!r}")
    return algo


def _conv_args(input, weight, other, stride, padding, dilation, groups, algo, backward=False, input_grad=True,
               weight_grad=True):
    """Checked, contiguous 4-D input and weight, whether the input was unbatched, the kernel
    parameters (stride, (top, bottom, left, right), dilation, groups) as the bindings take them,
    the algorithm's scratch (None when it needs none), and ``other`` ((array or None, name,
    ndims, layout): the bias or grad_output) checked and contiguous. Every check runs before any array is
    copied or allocated."""
    x = _device_operand(input, "input", (3, 4), "N, C, H, W or unbatched C, H, W")
    w = _device_operand(weight, "weight", (4,), "out_channels, in_channels/groups, kH, kW", like=x)
    extra = None if other[0] is None else _device_operand(*other, like=x)
    stride = _pair(stride, "stride", minimum=1)
    dilation = _pair(dilation, "dilation", minimum=1)
    groups = _int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    params = (stride, _conv_padding(padding, tuple(w.shape[2:]), stride, dilation), dilation, groups)
    _check_int64(stride=stride, padding=params[1], dilation=dilation, groups=(groups,))
    _algo(algo)
    unbatched = x.ndim == 3
    x_shape = (1, *x.shape) if unbatched else tuple(x.shape)
    # Also checks the shapes against the parameters, with a ValueError naming the argument.
    floats = _cuda.conv2d_workspace(x_shape, tuple(w.shape), *params, algo, backward, input_grad, weight_grad)
    x = _contiguous(x[None] if unbatched else x)
    workspace = empty((floats,), x) if floats > 0 else None
    if extra is not None:
        extra = _contiguous(extra[None] if unbatched and extra.ndim == 3 else extra)
    return x, _contiguous(w), extra, unbatched, params, workspace


def _output_shape(x, w, params):
    (sh, sw), (top, bottom, left, right), (dh, dw), _ = params
    n, _, h, wd = x.shape
    k, _, kh, kw = w.shape
    return (n, k, (h + top + bottom - dh * (kh - 1) - 1) // sh + 1, (wd + left + right - dw * (kw - 1) - 1) // sw + 1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algo="auto"):
    """:func:`cnnkit.functional.conv2d` on CUDA arrays: the output is a new array of the input's
    kind, computed on the caller's current stream."""
    x, w, b, unbatched, params, workspace = _conv_args(input, weight, (bias, "bias", (1,), "out_channels"), stride,
                                                       padding, dilation, groups, algo)
    out = empty(_output_shape(x, w, params), x)
    _cuda.conv2d(x, w, b, out, workspace, *params, algo, stream_of(x))
    return out[0] if unbatched else out


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *, input_grad=True,
                    weight_grad=True, bias_grad=True, algo="auto"):
    """:func:`cnnkit.functional.conv2d_backward` on CUDA arrays: ``(grad_input, grad_weight,
    grad_bias)``, each None when its flag is false."""
    input_grad, weight_grad, bias_grad = bool(input_grad), bool(weight_grad), bool(bias_grad)
    dy_spec = (grad_output, "grad_output", (getattr(input, "ndim", 4),), "the conv2d output for this input")
    x, w, dy, unbatched, params, workspace = _conv_args(input, weight, dy_spec, stride, padding, dilation, groups,
                                                        algo, True, input_grad, weight_grad)
    dx = empty(x.shape, x) if input_grad else None
    dw = empty(w.shape, x) if weight_grad else None
    db = empty((w.shape[0],), x) if bias_grad else None
    _cuda.conv2d_backward(dy, x, w, dx, dw, db, workspace, *params, algo, stream_of(x))
    if unbatched and dx is not None:
        dx = dx[0]
    return dx, dw, db
