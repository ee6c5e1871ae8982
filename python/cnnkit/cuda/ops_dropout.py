"""Dropout on CUDA arrays, with the signatures of their ``cnnkit.functional`` twins.

The random numbers come from a counter-based generator (Philox4x32-10, csrc/cuda/dropout): each
call draws one 64-bit key from ``generator`` or cnnkit's seeded default generator (as the CPU ops
draw their uniforms from it), so ``cnnkit.manual_seed`` makes GPU dropout repeat; unit ``u`` (an
element, or a channel for dropout2d) is kept when its uniform number is ``>= p``. The GPU's masks
differ from the CPU's for the same seed (a different generator), not in distribution.
"""

import warnings

import numpy as np

from .. import _cuda
from ..functional import _flag, _float
from ._device import empty, stream_of

__all__ = ["dropout", "dropout_backward", "dropout2d", "dropout2d_backward"]


def _p(p):
    p = _float(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return p


def _key(p, training, generator):
    """The Philox key, drawn only when something random happens (as the CPU ops draw)."""
    from .._rng import default_generator

    if not training or p in (0.0, 1.0):
        return 0, 0
    words = (generator or default_generator()).integers(0, 2**32, size=2, dtype=np.uint64)
    return int(words[0]), int(words[1])


def _dropout(input, p, training, inplace, generator, return_mask, mask_shape, channelwise):
    p, training = _p(p), _flag(training, "training")
    if not training:
        p = 0.0  # identity: every unit kept, scale 1
    out = input if _flag(inplace, "inplace") else empty(input.shape, input)
    mask = empty(mask_shape, input) if _flag(return_mask, "return_mask") else None
    _cuda.dropout(input, out, mask, channelwise, p, *_key(p, training, generator), stream_of(input))
    return (out, mask) if mask is not None else out


def dropout(input, p=0.5, training=True, inplace=False, *, generator=None, return_mask=False):
    return _dropout(input, p, training, inplace, generator, return_mask, input.shape, False)


def _backward(grad_output, mask, want, op):
    if tuple(mask.shape) != tuple(want):
        raise ValueError(f"{op}: mask shape {tuple(mask.shape)} does not match {tuple(want)} for grad_output shape "
                         f"{tuple(grad_output.shape)}")
    out = empty(grad_output.shape, grad_output)
    _cuda.dropout_backward(grad_output, mask, out, stream_of(grad_output))
    return out


def dropout_backward(grad_output, mask, p=0.5):
    return _backward(grad_output, mask, grad_output.shape, "dropout_backward")


def _channel_mask_shape(shape):
    return tuple(shape[:2]) + (1,) * (len(shape) - 2)


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None, return_mask=False):
    ndim = len(input.shape)
    if ndim not in (3, 4):
        raise ValueError(f"dropout2d: input must be 4-D (N, C, H, W) or 3-D (N, C, L), got shape {tuple(input.shape)}")
    if ndim == 3:
        warnings.warn("dropout2d: a 3-D input is read as (N, C, L) and whole channels of length L "
                      "are dropped, as PyTorch does today", UserWarning, stacklevel=2)
    return _dropout(input, p, training, inplace, generator, return_mask, _channel_mask_shape(input.shape), True)


def dropout2d_backward(grad_output, mask, p=0.5):
    return _backward(grad_output, mask, _channel_mask_shape(grad_output.shape), "dropout2d_backward")
