"""The conv oracle's backward against central finite differences of its forward, in float64.

conv2d is linear in each of x, w and b, so central differences have no
truncation error: they match the analytic gradient up to float64 rounding.
"""

import numpy as np
import pytest

from cnnkit import reference


def _numeric_grad(f, a, eps=1e-3):
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        saved = a[i]
        a[i] = saved + eps
        up = f()
        a[i] = saved - eps
        down = f()
        a[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, dilation, groups",
    [
        ((2, 3, 5, 6), (4, 3, 3, 2), (1, 1), (1, 1, 0, 0), (1, 1), 1),
        ((1, 4, 7, 6), (4, 2, 3, 3), (2, 1), (0, 1, 2, 1), (1, 2), 2),
        ((2, 3, 6, 5), (6, 1, 2, 3), (1, 2), (1, 0, 1, 1), (2, 1), 3),
    ],
)
def test_conv2d_backward_matches_finite_differences(x_shape, w_shape, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    args = (stride, padding, dilation, groups)
    dy = rng.standard_normal(reference.conv2d(x, w, b, *args).shape)

    def loss():
        return float((reference.conv2d(x, w, b, *args) * dy).sum())

    dx, dw, db = reference.conv2d_backward(dy, x, w, *args)
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, _numeric_grad(loss, wrt), rtol=1e-7, atol=1e-9)


def test_conv2d_forward_on_a_hand_computed_case():
    # 1 channel, 3x3 input, 2x2 all-ones kernel, padding 1 on the bottom/right only, stride 2.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = reference.conv2d(x, w, np.array([0.5]), (2, 2), (0, 1, 0, 1), (1, 1), 1)
    np.testing.assert_array_equal(y, [[[[0 + 1 + 3 + 4 + 0.5, 2 + 5 + 0.5], [6 + 7 + 0.5, 8 + 0.5]]]])
