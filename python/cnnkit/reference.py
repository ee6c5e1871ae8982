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
