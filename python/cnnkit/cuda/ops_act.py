"""Activations on CUDA arrays, with the signatures of their ``cnnkit.functional`` twins."""

from .. import _cuda
from ._device import empty, stream_of


def relu(input):
    out = empty(input.shape, input)
    _cuda.relu(input, out, stream_of(input))
    return out


def relu_backward(grad_output, input):
    out = empty(input.shape, input)
    _cuda.relu_backward(grad_output, input, out, stream_of(input))
    return out
