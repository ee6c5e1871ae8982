"""The NumPy oracle: every cnnkit op, forward and backward, in float64.

Written for clarity, not speed (plain loops and einsum), and sharing no code
with the native kernels, so that tests compare two independent
implementations. Inputs are NumPy arrays; outputs are float64 arrays.
The backward functions are themselves checked against finite differences
(tests/test_reference.py).
"""

import numpy as np

# ----------------------------------------------------------------------------
# composite ops (adaptive pooling, local response norm, regression and margin losses)
# ----------------------------------------------------------------------------


def adaptive_avg_pool2d(x, out_h, out_w):
    """Mean over PyTorch's adaptive windows [floor(i*H/out), ceil((i+1)*H/out))."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        h0, h1 = int(np.floor(i * h / out_h)), int(np.ceil((i + 1) * h / out_h))
        for j in range(out_w):
            w0, w1 = int(np.floor(j * w / out_w)), int(np.ceil((j + 1) * w / out_w))
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def local_response_norm(x, size, alpha, beta, k):
    """b_c = a_c / (k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} a_c'^2) ** beta."""
    x = np.asarray(x, np.float64)
    channels = x.shape[1]
    y = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
        s = (x[:, lo : hi + 1] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (k + alpha / size * s) ** beta
    return y


def mse_loss(x, t, reduction):
    d = (np.asarray(x, np.float64) - np.asarray(t, np.float64)) ** 2
    return {"mean": d.mean, "sum": d.sum, "none": lambda: d}[reduction]()


def l1_loss(x, t, reduction):
    d = np.abs(np.asarray(x, np.float64) - np.asarray(t, np.float64))
    return {"mean": d.mean, "sum": d.sum, "none": lambda: d}[reduction]()


def multi_margin_loss(x, target, p, margin, reduction):
    """sum_{j != y} max(0, margin - x[y] + x[j])**p / C per sample."""
    x = np.asarray(x, np.float64)
    n, c = x.shape
    per = np.zeros(n)
    for i in range(n):
        for j in range(c):
            if j != target[i]:
                per[i] += max(0.0, margin - x[i, target[i]] + x[i, j]) ** p
    per /= c
    return {"mean": per.mean, "sum": per.sum, "none": lambda: per}[reduction]()



# ----------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------


def _conv2d_taps(x, kernel, stride, padding, dilation):
    """The zero-padded input, the output size, and per kernel tap (r, s) the
    row and column slices of the padded input that the tap reads for every
    output position."""
    (sh, sw), (top, bottom, left, right), (dh, dw) = stride, padding, dilation
    kh, kw = kernel
    xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    taps = [
        (r, s, slice(r * dh, r * dh + sh * (ho - 1) + 1, sh), slice(s * dw, s * dw + sw * (wo - 1) + 1, sw))
        for r in range(kh)
        for s in range(kw)
    ]
    return xp, (ho, wo), taps


def conv2d(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation as in PyTorch, in float64.

    ``stride`` and ``dilation`` are (h, w) pairs, ``padding`` is
    (top, bottom, left, right); ``b`` may be None. x: (N, C, H, W),
    w: (out, C/groups, kh, kw) -> (N, out, Ho, Wo).
    """
    w = np.asarray(w, dtype=np.float64)
    n, c = x.shape[0], x.shape[1]
    out = w.shape[0]
    cg, kg = c // groups, out // groups
    xp, (ho, wo), taps = _conv2d_taps(x, w.shape[2:], stride, padding, dilation)
    y = np.zeros((n, out, ho, wo))
    for r, s, rows, cols in taps:
        window = xp[:, :, rows, cols]
        for g in range(groups):
            y[:, g * kg : (g + 1) * kg] += np.einsum(
                "nchw,kc->nkhw", window[:, g * cg : (g + 1) * cg], w[g * kg : (g + 1) * kg, :, r, s]
            )
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups):
    """Gradients (dx, dw, db) of :func:`conv2d` for output gradient ``dy``, in float64."""
    dy = np.asarray(dy, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    top, _, left, _ = padding
    c, out = x.shape[1], w.shape[0]
    cg, kg = c // groups, out // groups
    dw = np.zeros(w.shape)
    xp, _, taps = _conv2d_taps(x, w.shape[2:], stride, padding, dilation)
    dxp = np.zeros(xp.shape)
    for r, s, rows, cols in taps:
        window = xp[:, :, rows, cols]
        for g in range(groups):
            dyg = dy[:, g * kg : (g + 1) * kg]
            dxp[:, g * cg : (g + 1) * cg, rows, cols] += np.einsum(
                "nkhw,kc->nchw", dyg, w[g * kg : (g + 1) * kg, :, r, s]
            )
            dw[g * kg : (g + 1) * kg, :, r, s] = np.einsum(
                "nkhw,nchw->kc", dyg, window[:, g * cg : (g + 1) * cg]
            )
    dx = dxp[:, :, top : top + x.shape[2], left : left + x.shape[3]]
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


# ----------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------


def _pool_pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pool_out_size(size, kernel, stride, pad, dilation, ceil_mode):
    """Number of windows along one axis, in padded coordinates (the padded input is
    [0, size + 2 pad), window o starts at o * stride). Floor mode: every window fits the padded
    input. Ceil mode: windows continue while the previous one left part of the padded input
    uncovered, but a window must start inside the input or its left padding."""
    if size == 0:
        return 0
    extent = dilation * (kernel - 1) + 1
    padded = size + 2 * pad
    count = 0
    while True:
        start = count * stride
        if ceil_mode:
            previous_short = count == 0 or (count - 1) * stride + extent < padded
            admitted = previous_short and start < size + pad
        else:
            admitted = start + extent <= padded
        if not admitted:
            return count
        count += 1


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(out, indices): each window's maximum and its flat h*W + w position, scanning the window
    row by row; a NaN replaces the running maximum (so the last NaN wins), ties keep the first."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    kh, kw = _pool_pair(kernel_size)
    sh, sw = _pool_pair(kernel_size if stride is None else stride)
    ph, pw = _pool_pair(padding)
    dh, dw = _pool_pair(dilation)
    ho = _pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    wo = _pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    out = np.empty((n, c, ho, wo))
    idx = np.empty((n, c, ho, wo), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            taps = [(r, q)
                    for r in (i * sh - ph + a * dh for a in range(kh)) if 0 <= r < h
                    for q in (j * sw - pw + b * dw for b in range(kw)) if 0 <= q < w]
            for b_ in range(n):
                for ch in range(c):
                    best, where = -np.inf, taps[0]
                    for r, q in taps:
                        v = x[b_, ch, r, q]
                        if np.isnan(v) or v > best:
                            best, where = v, (r, q)
                    out[b_, ch, i, j] = best
                    idx[b_, ch, i, j] = where[0] * w + where[1]
    return out, idx


def max_pool2d_backward(grad_output, input_shape, indices):
    """Scatter-add each output gradient onto the input position its index names."""
    n, c, h, w = input_shape
    g = np.asarray(grad_output, dtype=np.float64)
    grad = np.zeros((n, c, h * w))
    for b_ in range(n):
        for ch in range(c):
            np.add.at(grad[b_, ch], indices[b_, ch].ravel(), g[b_, ch].ravel())
    return grad.reshape(n, c, h, w)


def _avg_windows(shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """For each output (i, j): the input slices of its window and its divisor."""
    _, _, h, w = shape
    kh, kw = _pool_pair(kernel_size)
    sh, sw = _pool_pair(kernel_size if stride is None else stride)
    ph, pw = _pool_pair(padding)
    ho = _pool_out_size(h, kh, sh, ph, 1, ceil_mode)
    wo = _pool_out_size(w, kw, sw, pw, 1, ceil_mode)
    windows = {}
    for i in range(ho):
        for j in range(wo):
            # In padded coordinates the padded input spans [0, h + 2ph); the overhang
            # beyond it (ceil mode) never counts, the zero padding counts on request.
            r0, q0 = i * sh, j * sw
            rows_padded = [r for r in range(r0, r0 + kh) if r < h + 2 * ph]
            cols_padded = [q for q in range(q0, q0 + kw) if q < w + 2 * pw]
            rows = [r - ph for r in rows_padded if ph <= r < h + ph]
            cols = [q - pw for q in cols_padded if pw <= q < w + pw]
            if count_include_pad:
                divisor = len(rows_padded) * len(cols_padded)
            else:
                divisor = len(rows) * len(cols)
            windows[i, j] = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1), divisor)
    return ho, wo, windows


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Window sums of the zero-padded input over PyTorch's divisor (see _avg_windows)."""
    x = np.asarray(x, dtype=np.float64)
    ho, wo, windows = _avg_windows(x.shape, kernel_size, stride, padding, ceil_mode,
                                   count_include_pad)
    out = np.empty(x.shape[:2] + (ho, wo))
    for (i, j), (rs, cs, divisor) in windows.items():
        out[:, :, i, j] = x[:, :, rs, cs].sum(axis=(2, 3)) / divisor
    return out


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Each output gradient spread evenly (over the divisor) onto its window's inputs."""
    g = np.asarray(grad_output, dtype=np.float64)
    _, _, windows = _avg_windows(input_shape, kernel_size, stride, padding, ceil_mode,
                                 count_include_pad)
    grad = np.zeros(input_shape)
    for (i, j), (rs, cs, divisor) in windows.items():
        grad[:, :, rs, cs] += (g[:, :, i, j] / divisor)[:, :, None, None]
    return grad


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


def _bn_channels_last(x):
    """(N, C, ...) -> (C, M): every channel's values in a row."""
    x = np.asarray(x, dtype=np.float64)
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], x.size // max(x.shape[1], 1))


def _bn_restore(rows, shape):
    return np.moveaxis(rows.reshape((shape[1], shape[0]) + tuple(shape[2:])), 0, 1)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """(out, new_running_mean, new_running_var); the inputs are not modified.

    Training uses the batch mean and biased variance to normalise and blends the unbiased
    variance into the running variance; eval uses the running statistics.
    """
    shape = np.shape(x)
    rows = _bn_channels_last(x)
    c, m = rows.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    b = np.zeros(c) if bias is None else np.asarray(bias, dtype=np.float64)
    new_mean = None if running_mean is None else np.asarray(running_mean, dtype=np.float64)
    new_var = None if running_var is None else np.asarray(running_var, dtype=np.float64)
    if training:
        mean = rows.mean(axis=1)
        var = ((rows - mean[:, None]) ** 2).mean(axis=1)
        if new_mean is not None:
            new_mean = (1 - momentum) * new_mean + momentum * mean
            new_var = (1 - momentum) * new_var + momentum * var * m / (m - 1)
    else:
        mean, var = new_mean, new_var
    out = (rows - mean[:, None]) / np.sqrt(var[:, None] + eps) * w[:, None] + b[:, None]
    return _bn_restore(out, shape), new_mean, new_var


def batch_norm_backward(grad_output, x, running_mean, running_var, weight=None, training=True,
                        eps=1e-5):
    """(grad_input, grad_weight, grad_bias) of batch_norm, the latter two for weight given."""
    shape = np.shape(x)
    rows = _bn_channels_last(x)
    dy = _bn_channels_last(grad_output)
    c, m = rows.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    if training:
        mean = rows.mean(axis=1)
        var = ((rows - mean[:, None]) ** 2).mean(axis=1)
    else:
        mean = np.asarray(running_mean, dtype=np.float64)
        var = np.asarray(running_var, dtype=np.float64)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (rows - mean[:, None]) * invstd[:, None]
    grad_bias = dy.sum(axis=1)
    grad_weight = np.einsum("cm,cm->c", dy, xhat)
    if training:
        # x_hat depends on x through the batch mean and variance as well.
        dx = (w * invstd)[:, None] * (dy - grad_bias[:, None] / m - xhat * grad_weight[:, None] / m)
    else:
        dx = (w * invstd)[:, None] * dy
    return _bn_restore(dx, shape), grad_weight, grad_bias


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
    rows = int(np.prod(g.shape[:-1]))  # not -1: NumPy cannot infer it when a size is 0
    rows_g, rows_x = g.reshape(rows, g.shape[-1]), x.reshape(rows, x.shape[-1])
    grad_weight = np.einsum("no,ni->oi", rows_g, rows_x)
    grad_bias = rows_g.sum(axis=0)
    return grad_input, grad_weight, grad_bias


def softmax(x, dim=-1):
    x = _float64_array(x)
    # inf - inf in a line holding +inf or only -inf gives NaN, as PyTorch does.
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=dim, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax(x, dim=-1):
    x = _float64_array(x)
    # An empty line sums to 0, whose log (-inf) meets no element.
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = x - x.max(axis=dim, keepdims=True, initial=-np.inf)
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
