"""The NumPy oracle: every cnnkit op, forward and backward, in float64.

Written for clarity, not speed (plain loops and einsum), and sharing no code
with the native kernels, so that tests compare two independent
implementations. Inputs are NumPy arrays; outputs are float64 arrays.
The backward functions are themselves checked against finite differences
(tests/test_reference.py).
"""

import numpy as np

# ----------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------


def _float64_array(a):
    return np.asarray(a, dtype=np.float64)


def relu(x):
    x = _float64_array(x)
    return np.where(x < 0, 0.0, x)


def relu_backward(grad_output, x):
    # PyTorch passes the gradient wherever x <= 0 is false, NaN included.
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where(x <= 0, 0.0, g)


def leaky_relu(x, negative_slope=0.01):
    x = _float64_array(x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(grad_output, x, negative_slope=0.01):
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where(x > 0, g, negative_slope * g)


def elu(x, alpha=1.0):
    x = _float64_array(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(grad_output, x, alpha=1.0):
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where(x > 0, g, g * alpha * np.exp(np.minimum(x, 0.0)))


def relu6(x):
    x = _float64_array(x)
    return np.minimum(np.maximum(x, 0.0), 6.0)


def relu6_backward(grad_output, x):
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where((x > 0) & (x < 6), g, 0.0)


def sigmoid(x):
    x = _float64_array(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(grad_output, x):
    # s * (1 - s) written as s(x) * s(-x): no cancellation where s(x) is near 1.
    g, x = _float64_array(grad_output), _float64_array(x)
    return g * sigmoid(x) * sigmoid(-x)


def tanh(x):
    return np.tanh(_float64_array(x))


def tanh_backward(grad_output, x):
    # 1 / cosh^2 rather than 1 - tanh^2, which cancels for |x| > 10 even in float64.
    g, x = _float64_array(grad_output), _float64_array(x)
    with np.errstate(over="ignore"):
        return g / np.cosh(x) ** 2


def softplus(x, beta=1.0, threshold=20.0):
    x = _float64_array(x)
    with np.errstate(invalid="ignore"):  # NaN input: the NaN propagates
        return np.where(beta * x > threshold, x, np.logaddexp(0.0, beta * x) / beta)


def softplus_backward(grad_output, x, beta=1.0, threshold=20.0):
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where(beta * x > threshold, g, g * sigmoid(beta * x))


def _prelu_weight(x, weight):
    """weight broadcast against x along dim 1 (a single weight broadcasts everywhere)."""
    w = _float64_array(weight)
    if w.size == 1:
        return w.reshape(())
    return w.reshape((1, -1) + (1,) * (x.ndim - 2))


def prelu(x, weight):
    x = _float64_array(x)
    return np.where(x > 0, x, _prelu_weight(x, weight) * x)


def prelu_backward(grad_output, x, weight):
    g, x = _float64_array(grad_output), _float64_array(x)
    grad_input = np.where(x > 0, g, _prelu_weight(x, weight) * g)
    contribution = np.where(x > 0, 0.0, x * g)
    if np.size(weight) == 1:
        grad_weight = np.array([contribution.sum()])
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        grad_weight = contribution.sum(axis=axes)
    return grad_input, grad_weight


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------


def linear(x, weight, bias=None):
    y = np.einsum("...i,oi->...o", _float64_array(x), _float64_array(weight))
    return y if bias is None else y + _float64_array(bias)


def linear_backward(grad_output, x, weight):
    """(grad_input, grad_weight, grad_bias)."""
    g, x, w = _float64_array(grad_output), _float64_array(x), _float64_array(weight)
    grad_input = np.einsum("...o,oi->...i", g, w)
    rows_g, rows_x = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
    grad_weight = np.einsum("no,ni->oi", rows_g, rows_x)
    grad_bias = rows_g.sum(axis=0)
    return grad_input, grad_weight, grad_bias


def softmax(x, dim=-1):
    x = _float64_array(x)
    # inf - inf in a line holding +inf or only -inf gives NaN, as PyTorch does.
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax(x, dim=-1):
    x = _float64_array(x)
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def softmax_backward(grad_output, y, dim=-1):
    g, y = _float64_array(grad_output), _float64_array(y)
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output, y, dim=-1):
    g, y = _float64_array(grad_output), _float64_array(y)
    return g - np.exp(y) * g.sum(axis=dim, keepdims=True)


def cross_entropy(x, target, reduction="mean", ignore_index=-100):
    """Row by row: log(sum(exp(x[n]))) - x[n, target[n]]."""
    x = _float64_array(x)
    losses = np.zeros(x.shape[0])
    count = 0
    for n in range(x.shape[0]):
        t = int(target[n])
        if t == ignore_index:
            continue
        shifted = x[n] - x[n].max()
        losses[n] = np.log(np.exp(shifted).sum()) - shifted[t]
        count += 1
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / count if count else np.nan


def cross_entropy_backward(x, target, grad_output=1.0, reduction="mean", ignore_index=-100):
    x = _float64_array(x)
    grad = np.zeros_like(x)
    rows = [n for n in range(x.shape[0]) if int(target[n]) != ignore_index]
    for n in rows:
        if reduction == "none":
            scale = float(np.asarray(grad_output)[n])
        elif reduction == "sum":
            scale = float(grad_output)
        else:
            scale = float(grad_output) / len(rows)
        p = np.exp(x[n] - x[n].max())
        p /= p.sum()
        p[int(target[n])] -= 1.0
        grad[n] = scale * p
    return grad
