"""Ops written in NumPy inside functional (adaptive pooling, LRN, dropout, regression and margin
losses) against the float64 oracle; their backward against finite differences of the oracle."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import reference as R
from tolerance import assert_close


def _numeric_grad(f, x, g, eps=1e-6):
    """d/dx sum(g * f(x)) by central differences in float64."""
    x = x.astype(np.float64).copy()
    out = np.zeros_like(x)
    flat, gflat = x.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = np.sum(g * f(x))
        flat[i] = saved - eps
        down = np.sum(g * f(x))
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return out


@given(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 5), ow=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_adaptive_avg_pool2d(n, c, h, w, oh, ow, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    y = F.adaptive_avg_pool2d(x, (oh, ow))
    K = (-(-h // oh) + 1) * (-(-w // ow) + 1)  # the largest window
    assert_close(y, R.adaptive_avg_pool2d(x, oh, ow), R.adaptive_avg_pool2d(np.abs(x), oh, ow), K,
                 "adaptive_avg_pool2d")
    if n:
        g = np.random.default_rng(seed + 1).standard_normal(y.shape)
        dx = F.adaptive_avg_pool2d_backward(g.astype(np.float32), x, (oh, ow))
        expected = _numeric_grad(lambda v: R.adaptive_avg_pool2d(v, oh, ow), x, g)
        np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-6)


def test_adaptive_avg_pool2d_global_and_none():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1)[..., 0, 0], x.mean(axis=(2, 3)))
    assert F.adaptive_avg_pool2d(x, (None, 2)).shape == (2, 3, 4, 2)
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, 0)


@given(size=st.integers(1, 6), c=st.integers(1, 7), seed=st.integers(0, 2**31),
       alpha=st.floats(1e-4, 1.0), beta=st.floats(0.1, 1.0), k=st.floats(0.5, 2.0))
def test_local_response_norm(size, c, seed, alpha, beta, k):
    x = np.random.default_rng(seed).standard_normal((2, c, 3, 2)).astype(np.float32)
    y = F.local_response_norm(x, size, alpha, beta, k)
    expected = R.local_response_norm(x, size, alpha, beta, k)
    assert_close(y, expected, np.abs(expected), size, "local_response_norm")
    g = np.random.default_rng(seed + 1).standard_normal(x.shape)
    dx = F.local_response_norm_backward(g.astype(np.float32), x, size, alpha, beta, k)
    numeric = _numeric_grad(lambda v: R.local_response_norm(v, size, alpha, beta, k), x, g)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    g = rng.standard_normal((4, 3)) if reduction == "none" else 1.7
    for name in ("mse_loss", "l1_loss"):
        got = getattr(F, name)(x, t, reduction=reduction)
        want = getattr(R, name)(x, t, reduction)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        dx = getattr(F, name + "_backward")(x, t, g, reduction=reduction)
        numeric = _numeric_grad(lambda v: getattr(R, name)(v, t, reduction), x, g)
        np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(x, t[:2])


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multi_margin_loss(p, reduction):
    rng = np.random.default_rng(p)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = rng.integers(0, 4, 5)
    got = F.multi_margin_loss(x, t, p=p, reduction=reduction)
    np.testing.assert_allclose(got, R.multi_margin_loss(x, t, p, 1.0, reduction), rtol=1e-6)
    g = rng.standard_normal(5) if reduction == "none" else 0.5
    dx = F.multi_margin_loss_backward(x, t, g, p=p, reduction=reduction)
    numeric = _numeric_grad(lambda v: R.multi_margin_loss(v, t, p, 1.0, reduction), x, g)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="out of bounds"):
        F.multi_margin_loss(x, np.array([0, 1, 2, 3, 4]))
    with pytest.raises(TypeError):
        F.multi_margin_loss(x, t.astype(np.float32))


def test_dropout_functional():
    x = np.ones((1000,), np.float32)
    rng = np.random.default_rng(0)
    y, mask = F.dropout(x, 0.3, True, generator=rng, return_mask=True)
    np.testing.assert_array_equal(y, mask)
    assert abs((y == 0).mean() - 0.3) < 0.05
    np.testing.assert_array_equal(F.dropout_backward(np.full_like(x, 2), mask, 0.3), 2 * mask)
    np.testing.assert_array_equal(F.dropout(x, 0.3, training=False), x)
    assert not F.dropout(x, 1.0).any()
    with pytest.raises(ValueError):
        F.dropout(x, -0.1)


@pytest.mark.parametrize("case", ["adaptive", "lrn", "margin"])
def test_composites_match_torch(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    if case == "adaptive":
        x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
        ours = F.adaptive_avg_pool2d(x, (3, 2))
        theirs = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (3, 2))
    elif case == "lrn":
        x = rng.standard_normal((2, 6, 3, 3)).astype(np.float32)
        ours = F.local_response_norm(x, 4, 0.1, 0.75, 1.5)
        theirs = torch.nn.functional.local_response_norm(torch.from_numpy(x), 4, 0.1, 0.75, 1.5)
    else:
        x = rng.standard_normal((6, 5)).astype(np.float32)
        t = rng.integers(0, 5, 6)
        ours = F.multi_margin_loss(x, t, p=2, margin=0.7)
        theirs = torch.nn.functional.multi_margin_loss(torch.from_numpy(x), torch.from_numpy(t), p=2, margin=0.7)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)
