"""Pooling on CUDA arrays, with the signatures of their ``cnnkit.functional`` twins.

The geometry is validated and sized by the CPU's own checks (``make_pool2d_shape``), so a call the
CPU op rejects is rejected here with the same message. The backward passes gather (each input
element sums the outputs that reach it, in a fixed order): deterministic, no atomics. An index
passed to :func:`max_pool2d_backward` that is not a tap of its window (``max_pool2d`` never
returns one) makes that plane's gradient NaN instead of raising ``IndexError``, since checking it
on the host would synchronise the stream.
"""

from .. import _cuda
from ..functional import _flag, _int, _pair, _pool_geometry
from ._device import empty, stream_of

__all__ = [
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
]


def _nchw(shape, op):
    """``shape`` as NCHW and whether it came as CHW."""
    shape = tuple(shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"{op}: input must be CHW or NCHW, got shape {shape}")
    return ((1,) + shape, True) if len(shape) == 3 else (shape, False)


def _batched(a, unbatched):
    return a.reshape((1,) + tuple(a.shape)) if unbatched else a


def _unbatched(a, unbatched):
    return a.reshape(tuple(a.shape)[1:]) if unbatched else a


def _grad(grad_output, unbatched, op):
    want = 3 if unbatched else 4
    if len(grad_output.shape) != want:
        raise ValueError(f"{op}: grad_output must be {want}-D like the output, got shape {tuple(grad_output.shape)}")
    return _batched(grad_output, unbatched)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    shape, unbatched = _nchw(input.shape, "max_pool2d")
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation)
    ceil_mode = _flag(ceil_mode, "ceil_mode")
    oh, ow = _cuda.pool2d_output_size(shape, kernel, stride, padding, dilation, ceil_mode)
    out = empty(shape[:2] + (oh, ow), input)
    indices = empty(out.shape, input, "int64") if _flag(return_indices, "return_indices") else None
    _cuda.max_pool2d(_batched(input, unbatched), out, indices, kernel, stride, padding, dilation, ceil_mode,
                     stream_of(input))
    out = _unbatched(out, unbatched)
    return out if indices is None else (out, _unbatched(indices, unbatched))


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    op = "max_pool2d_backward"
    shape, unbatched = _nchw(input.shape, op)
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation)
    grad_input = empty(shape, grad_output)
    _cuda.max_pool2d_backward(_grad(grad_output, unbatched, op), _batched(indices, unbatched), shape, grad_input,
                              kernel, stride, padding, dilation, _flag(ceil_mode, "ceil_mode"),
                              stream_of(grad_output))
    return _unbatched(grad_input, unbatched)


def _divisor(divisor_override):
    if divisor_override is None:
        return 0
    divisor = _int(divisor_override, "divisor_override")
    if divisor == 0:
        raise ValueError("avg_pool2d: divisor_override must be non-zero")
    return divisor


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    shape, unbatched = _nchw(input.shape, "avg_pool2d")
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    ceil_mode = _flag(ceil_mode, "ceil_mode")
    oh, ow = _cuda.pool2d_output_size(shape, kernel, stride, padding, (1, 1), ceil_mode)
    out = empty(shape[:2] + (oh, ow), input)
    _cuda.avg_pool2d(_batched(input, unbatched), out, kernel, stride, padding, ceil_mode,
                     _flag(count_include_pad, "count_include_pad"), _divisor(divisor_override), stream_of(input))
    return _unbatched(out, unbatched)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    op = "avg_pool2d_backward"
    shape, unbatched = _nchw(input.shape, op)
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    grad_input = empty(shape, grad_output)
    _cuda.avg_pool2d_backward(_grad(grad_output, unbatched, op), shape, grad_input, kernel, stride, padding,
                              _flag(ceil_mode, "ceil_mode"), _flag(count_include_pad, "count_include_pad"),
                              _divisor(divisor_override), stream_of(grad_output))
    return _unbatched(grad_input, unbatched)


def _adaptive_size(shape, output_size):
    sizes = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size]
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2:
        raise ValueError(f"output_size must be an int, None or a pair of them, got {output_size!r}")
    # None keeps that dimension's input size.
    return _pair(tuple(shape[2 + i] if s is None else s for i, s in enumerate(sizes)), "output_size", minimum=1)


def adaptive_avg_pool2d(input, output_size):
    shape, unbatched = _nchw(input.shape, "adaptive_avg_pool2d")
    size = _adaptive_size(shape, output_size)
    out = empty(shape[:2] + size, input)
    _cuda.adaptive_avg_pool2d(_batched(input, unbatched), out, size, stream_of(input))
    return _unbatched(out, unbatched)


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    op = "adaptive_avg_pool2d_backward"
    shape, unbatched = _nchw(input.shape, op)
    size = _adaptive_size(shape, output_size)
    grad_input = empty(shape, grad_output)
    _cuda.adaptive_avg_pool2d_backward(_grad(grad_output, unbatched, op), shape, grad_input, size,
                                       stream_of(grad_output))
    return _unbatched(grad_input, unbatched)
