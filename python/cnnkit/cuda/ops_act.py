"""Activations on CUDA arrays, with the signatures of their ``cnnkit.functional`` twins.

Each op allocates its output with the caller's library (``_device.empty``) and queues one kernel
on the caller's current stream; the per-element formulas are the CPU's (csrc/cpu/act/formulas.h).
"""

import math

from .. import _cuda
from ..functional import _flag, _float, _gelu_kind, _hardtanh_bounds
from ._device import empty, stream_of

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "relu6", "relu6_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "softplus", "softplus_backward", "hardtanh",
    "hardtanh_backward", "gelu", "gelu_backward", "silu", "silu_backward", "prelu", "prelu_backward",
]


def _forward(name, input, a=0.0, b=0.0, inplace=False):
    out = input if inplace else empty(input.shape, input)
    _cuda.activation(name, input, out, a, b, stream_of(input))
    return out


def _backward(name, grad_output, input, a=0.0, b=0.0):
    if tuple(grad_output.shape) != tuple(input.shape):
        raise ValueError(f"grad_output shape {tuple(grad_output.shape)} must equal input shape {tuple(input.shape)}")
    out = empty(input.shape, input)
    _cuda.activation_backward(name, grad_output, input, out, a, b, stream_of(input))
    return out


def relu(input):
    return _forward("relu", input)


def relu_backward(grad_output, input):
    return _backward("relu", grad_output, input)


def leaky_relu(input, negative_slope=0.01):
    return _forward("leaky_relu", input, _float(negative_slope, "negative_slope"))


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    return _backward("leaky_relu", grad_output, input, _float(negative_slope, "negative_slope"))


def elu(input, alpha=1.0):
    return _forward("elu", input, _float(alpha, "alpha"))


def elu_backward(grad_output, input, alpha=1.0):
    return _backward("elu", grad_output, input, _float(alpha, "alpha"))


def relu6(input):
    return _forward("relu6", input)


def relu6_backward(grad_output, input):
    return _backward("relu6", grad_output, input)


def sigmoid(input):
    return _forward("sigmoid", input)


def sigmoid_backward(grad_output, input):
    return _backward("sigmoid", grad_output, input)


def tanh(input):
    return _forward("tanh", input)


def tanh_backward(grad_output, input):
    return _backward("tanh", grad_output, input)


def _softplus_args(beta, threshold):
    beta, threshold = _float(beta, "beta"), _float(threshold, "threshold")
    if beta == 0.0 or not math.isfinite(beta):
        raise ValueError(f"softplus: beta must be finite and non-zero, got {beta}")
    return beta, threshold


def softplus(input, beta=1.0, threshold=20.0):
    return _forward("softplus", input, *_softplus_args(beta, threshold))


def softplus_backward(grad_output, input, beta=1.0, threshold=20.0):
    return _backward("softplus", grad_output, input, *_softplus_args(beta, threshold))


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    lo, hi = _hardtanh_bounds(min_val, max_val)
    return _forward("hardtanh", input, float(lo), float(hi), _flag(inplace, "inplace"))


def hardtanh_backward(grad_output, input, min_val=-1.0, max_val=1.0):
    lo, hi = _hardtanh_bounds(min_val, max_val)
    return _backward("hardtanh", grad_output, input, float(lo), float(hi))


def gelu(input, approximate="none"):
    return _forward(_gelu_kind(approximate), input)


def gelu_backward(grad_output, input, approximate="none"):
    return _backward(_gelu_kind(approximate), grad_output, input)


def silu(input, inplace=False):
    return _forward("silu", input, inplace=_flag(inplace, "inplace"))


def silu_backward(grad_output, input):
    return _backward("silu", grad_output, input)


def _prelu_weight(weight):
    if len(weight.shape) > 1:
        raise ValueError(f"weight must have shape (), (1,) or (C,) with C = input.shape[1], got {tuple(weight.shape)}")
    return weight.reshape(-1)


def prelu(input, weight):
    out = empty(input.shape, input)
    _cuda.prelu(input, _prelu_weight(weight), out, stream_of(input))
    return out


def prelu_backward(grad_output, input, weight):
    """``(grad_input, grad_weight)``, grad_weight shaped like ``weight``."""
    grad_input = empty(input.shape, input)
    grad_weight = empty(weight.shape, input)
    _cuda.prelu_backward(grad_output, input, _prelu_weight(weight), grad_input, grad_weight.reshape(-1),
                         stream_of(input))
    return grad_input, grad_weight
