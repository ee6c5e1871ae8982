"""linear on CUDA arrays, with the signatures of its ``cnnkit.functional`` twins: cnnkit's tiled
SGEMM in float32 arithmetic (no TF32), the bias gradient summed without atomics."""

import math

from .. import _cuda
from ._device import empty, stream_of
from .ops_conv import _contiguous, _device_operand

__all__ = ["linear", "linear_backward"]


def _linear_args(input, weight, grad_output=None):
    """input as a contiguous (rows, in) array, weight contiguous, the input's leading dimensions,
    and grad_output (if given) as a contiguous (rows, out) array; every check before any copy."""
    x = _device_operand(input, "input", None, "")
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (*, in_features), got a scalar")
    w = _device_operand(weight, "weight", (2,), "out_features, in_features", like=x)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features (last dimension), weight expects {w.shape[1]}")
    lead = tuple(x.shape[:-1])
    rows = math.prod(lead)  # explicit: reshape(-1, 0) is ambiguous
    if grad_output is not None:
        dy = _device_operand(grad_output, "grad_output", None, "", like=x)
        if tuple(dy.shape) != lead + (w.shape[0],):
            raise ValueError(f"grad_output must have shape {lead + (w.shape[0],)}, got {tuple(dy.shape)}")
        grad_output = _contiguous(dy).reshape(rows, w.shape[0])
    return _contiguous(x).reshape(rows, x.shape[-1]), _contiguous(w), lead, grad_output


def linear(input, weight, bias=None):
    """:func:`cnnkit.functional.linear` on CUDA arrays: ``input @ weight.T + bias``, (*, in) -> (*, out)."""
    x, w, lead, _ = _linear_args(input, weight)
    b = None if bias is None else _contiguous(_device_operand(bias, "bias", (1,), "out_features", like=x))
    out = empty((x.shape[0], w.shape[0]), x)
    _cuda.linear(x, w, b, out, stream_of(x))
    return out.reshape(*lead, w.shape[0])


def linear_backward(grad_output, input, weight, *, input_grad=True, weight_grad=True, bias_grad=True):
    """:func:`cnnkit.functional.linear_backward` on CUDA arrays: ``(grad_input, grad_weight,
    grad_bias)``, each None when its flag is false; ``grad_bias`` sums over every leading dim."""
    x, w, lead, dy = _linear_args(input, weight, grad_output)
    dx = empty(x.shape, x) if input_grad else None
    dw = empty(w.shape, x) if weight_grad else None
    db = empty((w.shape[0],), x) if bias_grad else None
    _cuda.linear_backward(dy, x, w, dx, dw, db, stream_of(x))
    return (None if dx is None else dx.reshape(*lead, x.shape[1])), dw, db
