"""Native local response norm and adaptive average pooling: forward and backward against the
float64 oracle (whose backward is checked by finite differences) under every ISA cap, sizes around
the vector widths and the LRN block of 256 positions, 1 and 2 threads giving the same bits, the
reference kernels, NaN/inf confined to the windows holding them, and errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _C
from cnnkit import functional as F
from cnnkit import reference as R
from tolerance import assert_close

WIDTHS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 33]


def _numeric_grad(f, x, g, eps=1e-6):
    x = x.astype(np.float64).copy()
    out = np.zeros_like(x)
    for i in range(x.size):
        saved = x.flat[i]
        x.flat[i] = saved + eps
        up = np.sum(g * f(x))
        x.flat[i] = saved - eps
        down = np.sum(g * f(x))
        x.flat[i] = saved
        out.flat[i] = (up - down) / (2 * eps)
    return out


def test_oracle_backwards_match_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 4))
    g = rng.standard_normal((2, 5, 2, 3))
    np.testing.assert_allclose(R.adaptive_avg_pool2d_backward(g, x.shape),
                               _numeric_grad(lambda v: R.adaptive_avg_pool2d(v, 2, 3), x, g), rtol=1e-6, atol=1e-8)
    for size, beta in [(1, 0.75), (3, 0.5), (4, 1.3)]:
        g = rng.standard_normal(x.shape)
        np.testing.assert_allclose(R.local_response_norm_backward(g, x, size, 0.3, beta, 1.2),
                                   _numeric_grad(lambda v: R.local_response_norm(v, size, 0.3, beta, 1.2), x, g),
                                   rtol=1e-6, atol=1e-8)


@given(n=st.integers(0, 3), c=st.integers(0, 4), h=st.integers(1, 19), w=st.sampled_from(WIDTHS),
       oh=st.integers(1, 9), ow=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_adaptive_avg_pool2d_matches_oracle(isa, n, c, h, w, oh, ow, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    g = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
    y = F.adaptive_avg_pool2d(x, (oh, ow))
    dx = F.adaptive_avg_pool2d_backward(g, x, (oh, ow))
    K = (-(-h // oh) + 1) * (-(-w // ow) + 1)  # the largest window
    assert_close(y, R.adaptive_avg_pool2d(x, oh, ow), R.adaptive_avg_pool2d(np.abs(x), oh, ow), K,
                 "adaptive_avg_pool2d")
    # Each input is in at most 2 x 2 windows.
    assert_close(dx, R.adaptive_avg_pool2d_backward(g, x.shape), R.adaptive_avg_pool2d_backward(np.abs(g), x.shape),
                 4, "adaptive_avg_pool2d_backward")
    assert_close(_C.adaptive_avg_pool2d(x, oh, ow, reference=True), R.adaptive_avg_pool2d(x, oh, ow),
                 R.adaptive_avg_pool2d(np.abs(x), oh, ow), K, "adaptive_avg_pool2d reference")
    assert_close(_C.adaptive_avg_pool2d_backward(g, x.shape, reference=True), R.adaptive_avg_pool2d_backward(g, x.shape),
                 R.adaptive_avg_pool2d_backward(np.abs(g), x.shape), 4, "adaptive_avg_pool2d_backward reference")


@given(n=st.integers(0, 3), c=st.integers(0, 40), h=st.integers(1, 19), w=st.sampled_from(WIDTHS),
       integers=st.booleans(), seed=st.integers(0, 2**31))
def test_global_adaptive_avg_pool2d_matches_oracle(isa, n, c, h, w, integers, seed):
    """Output 1x1 takes its own loops (one sum per plane, eight running sums from 8 inputs on):
    planes on both sides of 8 floats, and integer fills whose sums and shares are exact."""
    rng = np.random.default_rng(seed)
    if integers:
        x = rng.integers(-8, 9, (n, c, h, w)).astype(np.float32)
        g = (rng.integers(-8, 9, (n, c, 1, 1)) * h * w).astype(np.float32)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        g = rng.standard_normal((n, c, 1, 1)).astype(np.float32)
    y = F.adaptive_avg_pool2d(x, 1)
    dx = F.adaptive_avg_pool2d_backward(g, x, 1)
    want_y, want_dx = R.adaptive_avg_pool2d(x, 1, 1), R.adaptive_avg_pool2d_backward(g, x.shape)
    if integers and h * w in (1, 2, 4, 8, 16):
        np.testing.assert_array_equal(y, want_y.astype(np.float32))
    if integers:
        np.testing.assert_array_equal(dx, want_dx.astype(np.float32))
    assert_close(y, want_y, R.adaptive_avg_pool2d(np.abs(x), 1, 1), h * w, "global adaptive_avg_pool2d")
    assert_close(dx, want_dx, R.adaptive_avg_pool2d_backward(np.abs(g), x.shape), 1,
                 "global adaptive_avg_pool2d_backward")


def _lrn_scale(x, size, alpha, k):
    """k + alpha/size * the sum of squares over channel c's window, for every c."""
    squares = np.zeros_like(x)
    for c in range(x.shape[1]):
        squares[:, c] = (x[:, max(0, c - size // 2) : c + (size - 1) // 2 + 1] ** 2).sum(axis=1)
    return k + alpha / size * squares


@settings(deadline=None)
@given(n=st.integers(0, 2), c=st.integers(0, 13), inner=st.sampled_from(WIDTHS + [257, 600]),
       size=st.integers(1, 7), alpha=st.floats(1e-4, 1.0), beta=st.sampled_from([0.75, 0.5, 1.0, 0.3, 1.7]),
       k=st.floats(0.5, 2.0), seed=st.integers(0, 2**31))
def test_local_response_norm_matches_oracle(isa, n, c, inner, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, inner)) * 2).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    y = F.local_response_norm(x, size, alpha, beta, k)
    dx = F.local_response_norm_backward(g, x, size, alpha, beta, k)
    want_y = R.local_response_norm(x, size, alpha, beta, k)
    want_dx = R.local_response_norm_backward(g, x, size, alpha, beta, k)
    # A: |y| for the forward (products and a sum of squares); for the backward its two terms in
    # absolute value, |g| s^-beta and 2 alpha beta / size |x| sum |g x| s^(-beta-1), which cancel:
    # the oracle's backward on |g|, |x| is their difference.
    a_y = np.abs(want_y)
    x64, g64 = np.abs(x.astype(np.float64)), np.abs(g.astype(np.float64))
    first = g64 * _lrn_scale(x64, size, alpha, k) ** -beta
    a_dx = 2 * first - R.local_response_norm_backward(g64, x64, size, alpha, beta, k)
    assert_close(y, want_y, a_y, size, "local_response_norm")
    assert_close(dx, want_dx, a_dx, 2 * size, "local_response_norm_backward")
    assert_close(_C.local_response_norm(x, size, alpha, beta, k, reference=True), want_y, a_y, size,
                 "local_response_norm reference")
    assert_close(_C.local_response_norm_backward(g, x, size, alpha, beta, k, reference=True), want_dx, a_dx, 2 * size,
                 "local_response_norm_backward reference")


@given(size=st.integers(1, 7), beta=st.sampled_from([0.75, 0.5, 1.0]), huge_at=st.integers(0, 299),
       tiny=st.booleans(), seed=st.integers(0, 2**31))
def test_local_response_norm_scales_beyond_float_range(isa, size, beta, huge_at, tiny, seed):
    """The common exponents run in float while every scale of a block is a normal float; a block
    holding an input near 1e20 (its square beyond float) or, with k = 0, near-zero inputs
    (subnormal scales) runs in double, and must match the oracle like the others."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 6, 300)).astype(np.float32)
    k = 1.0
    if tiny:
        # Scales near 1e-40 (subnormal in float); beta = 1 would put the gradient beyond float.
        x[0, :, huge_at] *= np.float32(3e-20)
        k = 0.0
        beta = min(beta, 0.75)
    else:
        x[0, 3, huge_at] = np.float32(3e20)
    g = rng.standard_normal(x.shape).astype(np.float32)
    want_y = R.local_response_norm(x, size, 0.5, beta, k)
    want_dx = R.local_response_norm_backward(g, x, size, 0.5, beta, k)
    x64, g64 = np.abs(x.astype(np.float64)), np.abs(g.astype(np.float64))
    a_dx = 2 * g64 * _lrn_scale(x64, size, 0.5, k) ** -beta - R.local_response_norm_backward(g64, x64, size, 0.5, beta, k)
    assert_close(F.local_response_norm(x, size, 0.5, beta, k), want_y, np.abs(want_y), size, "local_response_norm")
    assert_close(F.local_response_norm_backward(g, x, size, 0.5, beta, k), want_dx, a_dx, 2 * size,
                 "local_response_norm_backward")


def test_threads_give_the_same_bits(isa):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16, 23, 29)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    gp = rng.standard_normal((3, 16, 5, 7)).astype(np.float32)
    runs = []
    for t in (1, 2):
        cnnkit.set_num_threads(t)
        runs.append((F.local_response_norm(x, 5, 1e-3, 0.75, 2.0), F.local_response_norm_backward(g, x, 5, 1e-3, 0.75, 2.0),
                     F.adaptive_avg_pool2d(x, (5, 7)), F.adaptive_avg_pool2d_backward(gp, x, (5, 7))))
    cnnkit.set_num_threads(2)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_nan_and_inf_stay_in_the_windows_holding_them(isa):
    x = np.random.default_rng(2).standard_normal((1, 12, 300)).astype(np.float32)
    x[0, 2, 5], x[0, 7, 260] = np.nan, np.inf
    g = np.ones_like(x)
    with np.errstate(invalid="ignore", over="ignore"):
        want_y = R.local_response_norm(x, 3, 0.5, 0.75, 1.0)
        want_dx = R.local_response_norm_backward(g, x, 3, 0.5, 0.75, 1.0)
    y = F.local_response_norm(x, 3, 0.5, 0.75, 1.0)
    dx = F.local_response_norm_backward(g, x, 3, 0.5, 0.75, 1.0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want_y))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(want_dx))
    assert np.isfinite(y[0, 6:, 5]).all() and np.isnan(y[0, 1:4, 5]).all()
    xp = np.ones((1, 2, 6, 6), np.float32)
    xp[0, 0, 0, 0] = np.nan
    yp = F.adaptive_avg_pool2d(xp, 3)
    assert np.isnan(yp[0, 0, 0, 0]) and np.isfinite(yp[0, 0].reshape(-1)[1:]).all() and np.isfinite(yp[0, 1]).all()


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 11, 13)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    for size, beta in [(5, 0.75), (4, 0.6)]:
        tx = torch.from_numpy(x.copy()).requires_grad_()
        ty = torch.nn.functional.local_response_norm(tx, size, 1e-2, beta, 1.5)
        ty.backward(torch.from_numpy(g))
        np.testing.assert_allclose(F.local_response_norm(x, size, 1e-2, beta, 1.5), ty.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(F.local_response_norm_backward(g, x, size, 1e-2, beta, 1.5), tx.grad.numpy(),
                                   rtol=1e-4, atol=1e-5)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, (4, 6))
    gp = rng.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.from_numpy(gp))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (4, 6)), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.adaptive_avg_pool2d_backward(gp, x, (4, 6)), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise_named_errors():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="size"):
        F.local_response_norm(x, 0)
    with pytest.raises(ValueError, match="3 dimensions"):
        _C.local_response_norm(x[0, 0], 3, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match="grad_output"):
        F.local_response_norm_backward(x[:1], x, 3)
    with pytest.raises(ValueError, match="grad_output"):
        _C.adaptive_avg_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), (2, 4, 4, 4))
    with pytest.raises(ValueError, match="sizes"):
        _C.adaptive_avg_pool2d(x, 0, 2)
    with pytest.raises(ValueError, match="4-D"):
        _C.adaptive_avg_pool2d(x[0], 2, 2)


@pytest.mark.parametrize("name", ["local_response_norm_implementation", "adaptive_pool2d_implementation"])
def test_dispatch_picks_the_widest_enabled_kernel(isa, name):
    want = {"scalar": "threaded", "avx2": "threaded_avx2", "avx512": "threaded_avx512"}[isa]
    assert getattr(_C, name)() == want
