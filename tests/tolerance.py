"""The one float32-vs-float64 comparison used by every test (docs/RELIABILITY.md).

With K the reduction length, u = 2**-24 and A the same op applied to |inputs|
in float64:   |y - y_oracle| <= c * sqrt(K) * u * A   (c = 8).
A plain relative tolerance would be wrong: cancellation makes y ~ 0 while A is large.
"""

import collections

import numpy as np

U = 2.0**-24
C = 8.0
SUBNORMAL_SPACING = 2.0**-149

# Largest observed |error| / (sqrt(K) * u * A) per op, reported at the end of the run.
worst_ratio = collections.defaultdict(float)


def assert_close(actual, expected, magnitude, K, op, c=C):
    """Assert ``actual`` (float32) matches ``expected`` (float64) under the rule.

    ``magnitude`` is A (broadcastable to ``expected``); ``K`` the reduction length.
    NaN must match NaN and infinities must match exactly.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{op}: shape {actual.shape} != {expected.shape}"
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), expected.shape)
    nan_e = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan_e), f"{op}: NaN positions differ"
    inf_e = np.isinf(expected)
    assert np.array_equal(actual[inf_e], expected[inf_e]), f"{op}: infinities differ"
    finite = ~(nan_e | inf_e)
    if not finite.any():
        return
    err = np.abs(actual[finite] - expected[finite])
    scale = np.sqrt(max(K, 1)) * U * magnitude[finite]
    # Below 2**-126 float32 keeps a fixed absolute spacing of 2**-149, so a
    # subnormal result can be no closer than that, however small A is.
    bound = c * (scale + SUBNORMAL_SPACING)
    bad = err > bound
    ratios = err / (scale + SUBNORMAL_SPACING)
    worst_ratio[op] = max(worst_ratio[op], float(ratios.max()))
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(
            f"{op}: {int(bad.sum())} of {bad.size} values outside c*sqrt(K)*u*A "
            f"(K={K}); first: got {actual[finite][i]!r}, expected {expected[finite][i]!r}, "
            f"bound {bound[i]!r}"
        )


def assert_exact(actual, expected, op):
    """Small-integer fills: float32 must equal the float64 oracle exactly."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{op}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected, err_msg=f"{op}: integer fill not exact")


# Winograd F(2x2, 5x5) (the plan's Winograd order on 5x5 layers of 8 or more input channels,
# plan_winograd_impl.h) sums, before its exact scale by 1/576, up to 1384**2 * C * max|w| * max|x|
# (its scaled transforms' row sums): integer fills are exact only while that stays below 2**24.
WINOGRAD_5X5_GROWTH = 1384**2


def winograd_5x5_rounds(kernel, in_channels, w_max, x_max):
    """Whether a 5x5 layer the Winograd order runs may round on integer fills."""
    return tuple(kernel) == (5, 5) and in_channels >= 8 and WINOGRAD_5X5_GROWTH * in_channels * w_max * x_max >= 2**24
