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


# ----------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# linear, softmax and losses
# ----------------------------------------------------------------------------
