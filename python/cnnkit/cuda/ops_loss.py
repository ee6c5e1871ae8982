"""Softmax, log-softmax, cross-entropy and NLL on CUDA arrays, with the signatures of their
``cnnkit.functional`` twins.

Rows (the lines a softmax or a class loss runs along) are reduced in a fixed order in double, one
block per row for long rows and one thread per row for short ones (``_ROW_BLOCK``); both forms
compute the same definition and are tested side by side. Differences from the CPU ops, all
because reading a result back would synchronise the caller's stream:

- ``cross_entropy``/``nll_loss`` with ``"mean"``/``"sum"`` return a one-element device array of
  the caller's kind, not a Python float;
- a target outside ``[0, C)`` (other than ``ignore_index``) gives NaN for its row (and so for a
  reduced loss) instead of ``IndexError``;
- ``dtype=`` other than float32 raises ``TypeError``.
"""

import numpy as np

from .. import _cuda
from ..functional import _dim, _float, _int, _legacy_reduction, _reduction_ignore_index
from ._device import empty, stream_of

__all__ = [
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "cross_entropy", "cross_entropy_backward",
    "nll_loss", "nll_loss_backward",
]

# Rows at least this long get a block of threads each; shorter ones a thread each.
_ROW_BLOCK = 128


def _by_block(algo, length, stride=1):
    """Whether a reduction runs a block per row. ``stride``: the distance between a row's
    elements; a block's threads then read far apart, while a thread per row reads neighbouring
    rows side by side, so strided rows always get a thread each under "auto"."""
    if algo not in ("auto", "block", "thread"):
        raise ValueError(f"algo must be 'auto', 'block' or 'thread', got {algo!r}")
    return algo == "block" or (algo == "auto" and stride == 1 and length >= _ROW_BLOCK)


def _row_layout(shape, axis):
    """A row's length and the distance between its elements, along ``axis`` of ``shape``."""
    if not shape:
        return 1, 1
    return shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64))


def _check_dtype(dtype):
    if dtype is not None and str(dtype).removeprefix("torch.") != "float32":
        raise TypeError(f"dtype: only float32 is supported on CUDA, got {dtype!r}")


def _axis(input, dim):
    return _dim(_int(dim, "dim"), len(input.shape), "dim") if len(input.shape) else 0


def _softmax(input, dim, log, algo="auto"):
    axis = _axis(input, dim)
    out = empty(input.shape, input)
    _cuda.softmax(input, out, axis, log, _by_block(algo, *_row_layout(tuple(input.shape), axis)), stream_of(input))
    return out


def _softmax_grad(grad_output, output, dim, log, algo="auto"):
    axis = _axis(output, dim)
    out = empty(output.shape, output)
    by_block = _by_block(algo, *_row_layout(tuple(output.shape), axis))
    _cuda.softmax_backward(grad_output, output, out, axis, log, by_block, stream_of(output))
    return out


def softmax(input, dim=-1, *, dtype=None):
    _check_dtype(dtype)
    return _softmax(input, dim, False)


def softmax_backward(grad_output, output, dim=-1):
    return _softmax_grad(grad_output, output, dim, False)


def log_softmax(input, dim=-1, *, dtype=None):
    _check_dtype(dtype)
    return _softmax(input, dim, True)


def log_softmax_backward(grad_output, output, dim=-1):
    return _softmax_grad(grad_output, output, dim, True)


def _full(value, shape, like):
    out = empty(shape, like)
    (out.fill_ if hasattr(out, "fill_") else out.fill)(value)
    return out


class _Call:
    """One class-loss call's arguments, checked, with the input as (N, C, ...) and the target as
    one class per row or, for cross-entropy, class probabilities of the input's shape."""

    def __init__(self, op, input, target, weight, ignore_index, reduction, label_smoothing):
        if len(input.shape) == 0:
            raise ValueError(f"{op}: input must have a class dimension: (N, C, ...) or (C,), got a scalar")
        self.ignore_index = _reduction_ignore_index(reduction, ignore_index)
        self.reduction = reduction
        self.smoothing = _float(label_smoothing, "label_smoothing")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {self.smoothing}")
        self.unbatched = len(input.shape) == 1
        self.x = input.reshape(1, -1) if self.unbatched else input
        want = () if self.unbatched else tuple(input.shape[:1]) + tuple(input.shape[2:])
        self.probabilities = "float" in str(target.dtype)
        if self.probabilities:
            if not op.startswith("cross_entropy") or tuple(target.shape) != tuple(input.shape):
                raise TypeError(f"{op}: target must be int64 class indices of shape {want}"
                                + (" or float32 class probabilities of the input's shape" * op.startswith("cross")))
            if self.ignore_index >= 0:
                raise ValueError("ignore_index is not supported with class-probability targets, "
                                 f"got ignore_index={self.ignore_index}")
            self.target = target.reshape(self.x.shape)
        else:
            if tuple(target.shape) != want:
                raise ValueError(f"target must have shape {want} (input's without the class dimension) for input "
                                 f"of shape {tuple(input.shape)}, got {tuple(target.shape)}")
            self.target = target.reshape(-1)
        self.rows = int(np.prod(want, dtype=np.int64))
        self.loss_shape = want
        if weight is not None and tuple(weight.shape) != (self.x.shape[1],):
            raise ValueError(f"weight must have shape ({self.x.shape[1]},), one per class, "
                             f"got {tuple(weight.shape)}")
        self.weight = weight

    def by_block(self, algo):
        return _by_block(algo, *_row_layout(tuple(self.x.shape), 1))

    def forward(self, log_softmax, algo):
        none = self.reduction == "none"
        out = empty(self.loss_shape if none else (1,), self.x)
        scratch = empty((2 * self.rows,), self.x, "float64")
        _cuda.class_loss(self.x, self.target, self.probabilities, self.weight, out, scratch, self.ignore_index,
                         self.smoothing, log_softmax, self.reduction, self.by_block(algo), stream_of(self.x))
        return out

    def backward(self, grad_output, log_softmax, algo):
        if isinstance(grad_output, (int, float, np.floating, np.integer)):
            # A scalar upstream gradient: of the reduced loss, or of every element of an unreduced one.
            g = _full(float(grad_output), (self.rows if self.reduction == "none" else 1,), self.x)
        else:
            g = grad_output.reshape(-1)
        out = empty(self.x.shape, self.x)
        scratch = empty((1 + self.rows,), self.x, "float64")
        _cuda.class_loss_backward(self.x, self.target, self.probabilities, self.weight, g, out, scratch,
                                  self.ignore_index, self.smoothing, log_softmax, self.reduction,
                                  self.by_block(algo), stream_of(self.x))
        return out.reshape(-1) if self.unbatched else out


def _cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                   algo="auto"):
    return _Call("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing).forward(True, algo)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, size_average=None, ignore_index=-100,
                           reduce=None, reduction="mean", label_smoothing=0.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    call = _Call("cross_entropy_backward", input, target, weight, ignore_index, reduction, label_smoothing)
    return call.backward(grad_output, True, "auto")


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _Call("nll_loss", input, target, weight, ignore_index, reduction, 0.0).forward(False, "auto")


def nll_loss_backward(input, target, grad_output=1.0, weight=None, size_average=None, ignore_index=-100,
                      reduce=None, reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    call = _Call("nll_loss_backward", input, target, weight, ignore_index, reduction, 0.0)
    return call.backward(grad_output, False, "auto")
