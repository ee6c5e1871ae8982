"""Helpers on parameters, shaped like ``torch.nn.utils``."""

import math

import numpy as np

from ..functional import _float


def _with_grads(parameters):
    """The parameters (one, or an iterable) that have a gradient."""
    if hasattr(parameters, "data") and hasattr(parameters, "grad"):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their total norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of all gradients as one vector
    (``inf`` for the largest magnitude). As in PyTorch the gradients are
    multiplied in place by ``min(1, max_norm / (total_norm + 1e-6))`` and the
    total norm from before clipping is returned (a float; 0.0 when no
    parameter has a gradient). A NaN or infinite total norm is passed through,
    or raises ``RuntimeError`` with ``error_if_nonfinite=True``.
    """
    max_norm = _float(max_norm, "max_norm")
    norm_type = float(norm_type) if norm_type in ("inf", "-inf") else _float(norm_type, "norm_type")
    params = _with_grads(parameters)
    if not params:
        return 0.0
    # float64 and np.linalg.norm's orders: inf is the largest magnitude, -inf the smallest.
    norms = [np.linalg.norm(np.asarray(p.grad, dtype=np.float64).reshape(-1), norm_type)
             for p in params if np.size(p.grad)]
    total = float(np.linalg.norm(norms, norm_type)) if norms else 0.0
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    # np.minimum keeps a NaN norm's NaN, as PyTorch's clamp does.
    scale = np.float32(np.minimum(max_norm / (total + 1e-6), 1.0))
    for p in params:
        p.grad *= scale
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place."""
    clip_value = _float(clip_value, "clip_value")
    for p in _with_grads(parameters):
        np.clip(p.grad, -clip_value, clip_value, out=p.grad)
