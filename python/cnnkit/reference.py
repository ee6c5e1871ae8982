"""The NumPy oracle: every cnnkit op, forward and backward, in float64.

Written for clarity, not speed (plain loops and einsum), and sharing no code
with the native kernels, so that tests compare two independent
implementations. Inputs are NumPy arrays; outputs are float64 arrays.
The backward functions are themselves checked against finite differences
(tests/test_reference.py).
"""

import math

import numpy as np

__all__ = [
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "local_response_norm", "local_response_norm_backward",
    "mse_loss", "l1_loss", "multi_margin_loss", "conv2d",
    "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "batch_norm",
    "batch_norm_backward", "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu",
    "elu_backward", "relu6", "relu6_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "softplus", "softplus_backward", "prelu", "prelu_backward", "maxout", "maxout_backward", "linear", "linear_backward", "softmax",
    "log_softmax", "softmax_backward", "log_softmax_backward", "cross_entropy", "cross_entropy_backward",
    "cross_entropy_general", "nll_loss", "hardtanh", "hardtanh_backward", "gelu", "gelu_backward", "silu",
    "silu_backward", "conv_transpose2d", "conv_transpose2d_backward", "pad", "pad_backward", "interpolate",
    "interpolate_backward", "one_hot",
]

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


def adaptive_avg_pool2d_backward(grad_output, x_shape):
    """Each output's gradient spread evenly over its window (windows may overlap)."""
    g = np.asarray(grad_output, np.float64)
    n, c, h, w = x_shape
    out_h, out_w = g.shape[2:]
    dx = np.zeros((n, c, h, w))
    for i in range(out_h):
        h0, h1 = int(np.floor(i * h / out_h)), int(np.ceil((i + 1) * h / out_h))
        for j in range(out_w):
            w0, w1 = int(np.floor(j * w / out_w)), int(np.ceil((j + 1) * w / out_w))
            dx[:, :, h0:h1, w0:w1] += g[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx


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


def local_response_norm_backward(grad_output, x, size, alpha, beta, k):
    """d/dx_j of sum_c g_c b_c: g_j s_j^-beta - 2 alpha beta / size x_j sum over the channels c whose
    window holds j of g_c x_c s_c^(-beta - 1), s_c = k + alpha/size * (window sum of squares at c)."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_output, np.float64)
    channels = x.shape[1]
    scale = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
        scale[:, c] = k + alpha / size * (x[:, lo : hi + 1] ** 2).sum(axis=1)
    dx = g * scale**-beta
    for j in range(channels):
        for c in range(channels):
            if c - size // 2 <= j <= c + (size - 1) // 2:
                dx[:, j] -= 2 * alpha * beta / size * x[:, j] * g[:, c] * x[:, c] * scale[:, c] ** (-beta - 1)
    return dx


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



def _pad_source(i, n, mode):
    """The input index that padded position ``i`` (in input coordinates) copies, None for zeros."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if i < 0 else n - 1
    if mode == "circular":
        return i % n
    return -i if i < 0 else 2 * (n - 1) - i  # reflect


def _pad_map(shape, pad, mode):
    """Output shape and, per output index, the input index it copies (None: the pad value)."""
    widths = [(0, 0)] * len(shape)
    for k in range(len(pad) // 2):
        widths[len(shape) - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    out_shape = tuple(n + a + b for n, (a, b) in zip(shape, widths))
    mapping = {}
    for idx in np.ndindex(*out_shape):
        src = tuple(_pad_source(i - a, n, mode) for i, (a, _), n in zip(idx, widths, shape))
        mapping[idx] = None if None in src else src
    return out_shape, mapping


def pad(x, pad, mode="constant", value=0.0):
    """Element by element: each output copies the input element _pad_source names, or ``value``."""
    x = np.asarray(x, dtype=np.float64)
    out_shape, mapping = _pad_map(x.shape, pad, mode)
    y = np.empty(out_shape)
    for idx, src in mapping.items():
        y[idx] = value if src is None else x[src]
    return y


def pad_backward(grad_output, input_shape, pad, mode="constant"):
    g = np.asarray(grad_output, dtype=np.float64)
    _, mapping = _pad_map(input_shape, pad, mode)
    dx = np.zeros(input_shape)
    for idx, src in mapping.items():
        if src is not None:
            dx[src] += g[idx]
    return dx


def _interpolate_weights(n_in, n_out, mode, align_corners, scale_factor, spatial_dims):
    """Per output position along one axis, a dict {input index: weight}. The source coordinate of
    output position o: nearest: floor(o * n_in / n_out); nearest-exact: floor((o + 0.5) * n_in /
    n_out); linear: o * (n_in - 1) / (n_out - 1) with align_corners, else (o + 0.5) * n_in / n_out
    - 0.5 clamped at 0. A given scale factor replaces n_in / n_out by 1 / scale_factor. PyTorch's
    exceptions: an axis of unchanged size is copied (linear modes; nearest with two spatial
    dimensions, which also reads o // 2 where the size doubles)."""
    from fractions import Fraction

    ratio = Fraction(n_in, n_out) if scale_factor is None else 1 / Fraction(scale_factor)
    rows = []
    for o in range(n_out):
        if n_in == n_out and (mode not in ("nearest", "nearest-exact") or (mode, spatial_dims) == ("nearest", 2)):
            rows.append({o: 1.0})
            continue
        if n_out == 2 * n_in and (mode, spatial_dims) == ("nearest", 2):
            rows.append({o // 2: 1.0})
            continue
        if mode == "nearest":
            rows.append({min(math.floor(o * ratio), n_in - 1): 1.0})
            continue
        if mode == "nearest-exact":
            rows.append({min(math.floor((o + Fraction(1, 2)) * ratio), n_in - 1): 1.0})
            continue
        if align_corners:
            src = Fraction(o * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
        else:
            src = max((o + Fraction(1, 2)) * ratio - Fraction(1, 2), Fraction(0))
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = float(src - i0)
        row = {i0: 1.0 - lam}
        row[i1] = row.get(i1, 0.0) + lam
        rows.append(row)
    return rows


def interpolate(x, size, mode, align_corners=False, scale_factor=None):
    """Resampling of the last len(size) dimensions to ``size``: each output a weighted sum of the
    inputs _interpolate_weights names, taken axis by axis (all the modes are separable)."""
    y = np.asarray(x, dtype=np.float64)
    for k, n_out in enumerate(size):
        axis = 2 + k
        rows = _interpolate_weights(y.shape[axis], n_out, mode, align_corners,
                                    None if scale_factor is None else scale_factor[k], len(size))
        matrix = np.zeros((n_out, y.shape[axis]))
        for o, row in enumerate(rows):
            for i, weight in row.items():
                matrix[o, i] += weight
        y = np.moveaxis(np.tensordot(matrix, np.moveaxis(y, axis, 0), axes=1), 0, axis)
    return y


def interpolate_backward(grad_output, input_shape, mode, align_corners=False, scale_factor=None):
    """The transpose of :func:`interpolate`'s per-axis matrices applied to ``grad_output``."""
    g = np.asarray(grad_output, dtype=np.float64)
    for k in reversed(range(len(input_shape) - 2)):
        axis = 2 + k
        rows = _interpolate_weights(input_shape[axis], g.shape[axis], mode, align_corners,
                                    None if scale_factor is None else scale_factor[k], len(input_shape) - 2)
        matrix = np.zeros((g.shape[axis], input_shape[axis]))
        for o, row in enumerate(rows):
            for i, weight in row.items():
                matrix[o, i] += weight
        g = np.moveaxis(np.tensordot(matrix.T, np.moveaxis(g, axis, 0), axes=1), 0, axis)
    return g


def one_hot(t, num_classes):
    t = np.asarray(t)
    out = np.zeros(t.shape + (num_classes,), np.int64)
    for idx in np.ndindex(*t.shape):
        out[idx + (int(t[idx]),)] = 1
    return out


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


def _transpose_taps(x_shape, w_shape, stride, padding, dilation, out_hw, groups):
    """Every (input pixel, kernel tap, group) of a transposed convolution whose target lies inside
    the output: input pixel (i, j) with tap (r, q) lands on (i*sh - ph + r*dh, j*sw - pw + q*dw).
    Yields (i, j, r, q, oi, oj, input channel slice, output channel slice)."""
    _, cin, h, wd = x_shape
    kh, kw = w_shape[2:]
    cig, cog = cin // groups, w_shape[1]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    for i in range(h):
        for j in range(wd):
            for r in range(kh):
                for q in range(kw):
                    oi, oj = i * sh - ph + r * dh, j * sw - pw + q * dw
                    if 0 <= oi < out_hw[0] and 0 <= oj < out_hw[1]:
                        for g in range(groups):
                            yield (i, j, r, q, oi, oj, slice(g * cig, (g + 1) * cig),
                                   slice(g * cog, (g + 1) * cog))


def conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    """Transposed convolution by its definition: every input pixel scatters ``x * w[:, :, r, q]``
    to the output pixel _transpose_taps names. ``stride``, ``padding``, ``output_padding`` and
    ``dilation`` are (h, w) pairs; w: (C_in, C_out/groups, kh, kw)."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    out_hw = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                   zip(x.shape[2:], stride, padding, dilation, w.shape[2:], output_padding))
    y = np.zeros((x.shape[0], w.shape[1] * groups) + out_hw)
    for i, j, r, q, oi, oj, ci, co in _transpose_taps(x.shape, w.shape, stride, padding, dilation, out_hw,
                                                       groups):
        y[:, co, oi, oj] += np.einsum("nc,co->no", x[:, ci, i, j], w[ci, :, r, q])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv_transpose2d_backward(dy, x, w, stride, padding, output_padding, dilation, groups):
    """(dx, dw, db) of :func:`conv_transpose2d`: the same scatter read backwards (a gather)."""
    dy, x, w = (np.asarray(a, dtype=np.float64) for a in (dy, x, w))
    dx, dwt = np.zeros(x.shape), np.zeros(w.shape)
    for i, j, r, q, oi, oj, ci, co in _transpose_taps(x.shape, w.shape, stride, padding, dilation,
                                                       dy.shape[2:], groups):
        dx[:, ci, i, j] += np.einsum("no,co->nc", dy[:, co, oi, oj], w[ci, :, r, q])
        dwt[ci, :, r, q] += np.einsum("no,nc->co", dy[:, co, oi, oj], x[:, ci, i, j])
    return dx, dwt, dy.sum(axis=(0, 2, 3))


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


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Window sums of the zero-padded input over PyTorch's divisor (see _avg_windows), or over
    ``divisor_override`` when given."""
    x = np.asarray(x, dtype=np.float64)
    ho, wo, windows = _avg_windows(x.shape, kernel_size, stride, padding, ceil_mode,
                                   count_include_pad)
    out = np.empty(x.shape[:2] + (ho, wo))
    for (i, j), (rs, cs, divisor) in windows.items():
        out[:, :, i, j] = x[:, :, rs, cs].sum(axis=(2, 3)) / (divisor_override or divisor)
    return out


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Each output gradient spread evenly (over the divisor) onto its window's inputs."""
    g = np.asarray(grad_output, dtype=np.float64)
    _, _, windows = _avg_windows(input_shape, kernel_size, stride, padding, ceil_mode,
                                 count_include_pad)
    grad = np.zeros(input_shape)
    for (i, j), (rs, cs, divisor) in windows.items():
        grad[:, :, rs, cs] += (g[:, :, i, j] / (divisor_override or divisor))[:, :, None, None]
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


def maxout(x, pool_size, dim=1):
    """Unit j along ``dim`` is the largest of channels j*pool_size ... (j+1)*pool_size - 1."""
    x = np.moveaxis(_float64_array(x), dim, 0)
    units = [x[j * pool_size:(j + 1) * pool_size].max(axis=0) for j in range(x.shape[0] // pool_size)]
    return np.moveaxis(np.stack(units), 0, dim)


def maxout_backward(grad_output, x, pool_size, dim=1):
    """Each output gradient lands on the first channel of its group that holds the group's maximum."""
    x = np.moveaxis(_float64_array(x), dim, 0)
    g = np.moveaxis(_float64_array(grad_output), dim, 0)
    grad = np.zeros_like(x)
    for j in range(g.shape[0]):
        group = x[j * pool_size:(j + 1) * pool_size]
        winner = np.argmax(group, axis=0)
        for piece in range(pool_size):
            grad[j * pool_size + piece] += np.where(winner == piece, g[j], 0.0)
    return np.moveaxis(grad, 0, dim)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    x = _float64_array(x)
    return np.where(x < min_val, min_val, np.where(x > max_val, max_val, x))


def hardtanh_backward(grad_output, x, min_val=-1.0, max_val=1.0):
    g, x = _float64_array(grad_output), _float64_array(x)
    return np.where((x > min_val) & (x < max_val), g, 0.0)


def gelu(x, approximate="none"):
    """x * Phi(x) with math.erf element by element, or the tanh formula; -inf * 0 is NaN, as in PyTorch."""
    x = _float64_array(x)
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
        # Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation where Phi is tiny.
        phi = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)))(x) if x.size else x
        return x * phi


def gelu_backward(grad_output, x, approximate="none"):
    g, x = _float64_array(grad_output), _float64_array(x)
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            k = np.sqrt(2.0 / np.pi)
            inner = k * (x + 0.044715 * x**3)
            sech2 = 1.0 / np.cosh(inner) ** 2
            return g * (0.5 * (1.0 + np.tanh(inner)) + 0.5 * x * sech2 * k * (1.0 + 3 * 0.044715 * x**2))
        cdf = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)))(x) if x.size else x
        return g * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))


def silu(x):
    x = _float64_array(x)
    with np.errstate(invalid="ignore"):
        return x * sigmoid(x)


def silu_backward(grad_output, x):
    # d/dx x s(x) = s(x) + x s(x) (1 - s(x)), with 1 - s(x) = s(-x).
    g, x = _float64_array(grad_output), _float64_array(x)
    with np.errstate(invalid="ignore"):
        return g * (sigmoid(x) + x * sigmoid(x) * sigmoid(-x))


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


def _class_rows(x, target):
    """(N, C, d1, ...) scores and their targets as rows: (M, C) scores, M targets (indices, or
    (M, C) probabilities), where M = N * d1 * ...; a (C,) input is one row."""
    x = _float64_array(x)
    target = np.asarray(target)
    if x.ndim == 1:
        return x[None], target[None], ()
    rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    if target.shape == x.shape:
        return rows, np.moveaxis(target, 1, -1).reshape(-1, x.shape[1]), x.shape[:1] + x.shape[2:]
    return rows, target.reshape(-1), x.shape[:1] + x.shape[2:]


def _reduce_rows(losses, counted, shape, reduction):
    if reduction == "none":
        return losses.reshape(shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / counted if counted else np.nan


def nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean"):
    """Row by row: -weight[t] * x[t]; "mean" divides by the summed weights of the counted rows."""
    rows, targets, shape = _class_rows(x, target)
    w = np.ones(rows.shape[1]) if weight is None else _float64_array(weight)
    losses = np.zeros(len(rows))
    counted = 0.0
    for m in range(len(rows)):
        t = int(targets[m])
        if t != ignore_index:
            losses[m] = -w[t] * rows[m, t]
            counted += w[t]
    return _reduce_rows(losses, counted, shape, reduction)


def cross_entropy_general(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's cross-entropy with every option, row by row. With q the target distribution
    (one-hot of the label, or the given probabilities) mixed with the uniform one,
    q' = (1 - eps) q + eps / C, a row's loss is -sum_c weight[c] q'[c] log_softmax(x)[c]; for
    labels the label's own term carries weight[t] like the others. "mean" divides by the summed
    weight[t] of the counted rows (labels) or by the number of rows (probabilities)."""
    rows, targets, shape = _class_rows(x, target)
    n_rows, classes = rows.shape
    w = np.ones(classes) if weight is None else _float64_array(weight)
    probabilities = targets.ndim == 2
    losses = np.zeros(n_rows)
    counted = 0.0
    for m in range(n_rows):
        logp = log_softmax(rows[m])
        if probabilities:
            q = (1 - label_smoothing) * targets[m] + label_smoothing / classes
            counted += 1
        else:
            t = int(targets[m])
            if t == ignore_index:
                continue
            q = np.full(classes, label_smoothing / classes)
            q[t] += 1 - label_smoothing
            counted += w[t]
        losses[m] = -sum(w[c] * q[c] * logp[c] for c in range(classes))
    return _reduce_rows(losses, counted, shape, reduction)
