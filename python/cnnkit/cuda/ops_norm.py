"""Batch normalisation and local response normalisation on CUDA arrays, with the signatures of
their ``cnnkit.functional`` twins.

Batch-norm statistics are reduced per channel in double around a shift, in a fixed order: long
channels are cut into chunks folded by a block each, short ones folded by a thread each
(``_chunks``); the running statistics are updated in place on the device with PyTorch's unbiased
variance.
"""

import numpy as np

from .. import _cuda
from ..functional import _bn_eps, _flag, _float, _int
from ._device import empty, stream_of

__all__ = ["batch_norm", "batch_norm_backward", "local_response_norm", "local_response_norm_backward"]


def _bn_shape(input, op):
    shape = tuple(input.shape)
    if len(shape) not in (2, 3, 4, 5):
        raise ValueError(f"{op}: input must be (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), got shape {shape}")
    return shape, int(np.prod(shape, dtype=np.int64)) // max(shape[1], 1)


def _chunks(channels, per_channel):
    """Chunks per channel: 0 (a thread per channel) for short channels, else about 8192 elements a
    chunk, up to some 1024 blocks in all. A function of the shape alone, so that results do not
    depend on the card."""
    if per_channel < 256:
        return 0
    return max(1, min(per_channel // 8192, 1024 // max(channels, 1)))


def _scratch(shape, per_channel, like):
    chunks = _chunks(shape[1], per_channel)
    return chunks, empty((_cuda.batch_norm_scratch(shape[1], chunks),), like, "float64")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    shape, per_channel = _bn_shape(input, "batch_norm")
    out = empty(shape, input)
    chunks, scratch = _scratch(shape, per_channel, input)
    _cuda.batch_norm(input, running_mean, running_var, weight, bias, out, scratch, _flag(training, "training"),
                     _float(momentum, "momentum"), _bn_eps(eps), chunks, stream_of(input))
    return out


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, training=True, eps=1e-5):
    """``(grad_input, grad_weight, grad_bias)``; the last two are None without ``weight``."""
    shape, per_channel = _bn_shape(input, "batch_norm_backward")
    training = _flag(training, "training")
    grad_input = empty(shape, input)
    grad_weight = grad_bias = None
    if weight is not None:
        grad_weight, grad_bias = empty((shape[1],), input), empty((shape[1],), input)
    chunks, scratch = _scratch(shape, per_channel, input)
    _cuda.batch_norm_backward(grad_output, input, None if training else running_mean,
                              None if training else running_var, weight, grad_input, grad_weight, grad_bias, scratch,
                              training, _bn_eps(eps), chunks, stream_of(input))
    return grad_input, grad_weight, grad_bias


def _lrn_args(input, size, alpha, beta, k):
    if len(input.shape) < 3:
        raise ValueError(f"input must have at least 3 dimensions (N, C, ...), got shape {tuple(input.shape)}")
    size = _int(size, "size")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return size, _float(alpha, "alpha"), _float(beta, "beta"), _float(k, "k")


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    out = empty(input.shape, input)
    _cuda.local_response_norm(input, out, *_lrn_args(input, size, alpha, beta, k), stream_of(input))
    return out


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    out = empty(input.shape, input)
    _cuda.local_response_norm_backward(grad_output, input, out, *_lrn_args(input, size, alpha, beta, k),
                                       stream_of(input))
    return out
