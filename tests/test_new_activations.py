"""hardtanh, GELU (exact and tanh) and SiLU: forward and backward against the float64 oracle (whose
derivatives are checked by finite differences), PyTorch, their layers and error paths."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import nn
from cnnkit import reference as R
from tolerance import assert_close

CASES = [
    ("hardtanh", {}),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("silu", {}),
]
IDS = [name + "".join(f"-{v}" for v in kw.values()) for name, kw in CASES]


def _magnitudes(name, kw, x, g):
    """A: |x| for the forward (GELU and SiLU round x * s(x), s <= 1, which cancels nothing but is
    tiny against |x| for negative x) and |g| (1 + |x|) for the backward (the terms s and
    x * s'(x) cancel near the minimum of GELU and SiLU)."""
    ax, ag = np.abs(x.astype(np.float64)), np.abs(g.astype(np.float64))
    return ax, ag * (1.0 + ax)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=3), scale=st.sampled_from([0.5, 3.0, 12.0]),
       seed=st.integers(0, 2**31))
def test_activation_matches_oracle(name, kw, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    x.reshape(-1)[: min(3, x.size)] = np.array([0.0, -1.0, 1.0], np.float32)[: min(3, x.size)]  # the kinks
    g = rng.standard_normal(shape).astype(np.float32)
    y, dx = getattr(F, name)(x, **kw), getattr(F, name + "_backward")(g, x, **kw)
    assert y.dtype == dx.dtype == np.float32 and y.shape == dx.shape == x.shape
    a_fwd, a_bwd = _magnitudes(name, kw, x, g)
    assert_close(y, getattr(R, name)(x, **kw), a_fwd, 1, name)
    assert_close(dx, getattr(R, name + "_backward")(g, x, **kw), a_bwd, 1, name + "_backward")


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_oracle_derivative_matches_finite_differences(name, kw):
    x = np.linspace(-6, 6, 97)
    for kink in (kw.get("min_val", -1.0), kw.get("max_val", 1.0)):  # not across hardtanh's kinks
        x = x[np.abs(x - kink) > 1e-3]
    h = 1e-6
    fd = (getattr(R, name)(x + h, **kw) - getattr(R, name)(x - h, **kw)) / (2 * h)
    np.testing.assert_allclose(getattr(R, name + "_backward")(np.ones_like(x), x, **kw), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_activation_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    x = (np.random.default_rng(1).standard_normal(2000) * 5).astype(np.float32)
    x[:4] = [0.0, -1.0, 1.0, np.nan]
    g = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = getattr(torch.nn.functional, name)(xt, **kw)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(getattr(F, name)(x, **kw), yt.detach().numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(getattr(F, name + "_backward")(g, x, **kw), xt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_layers_and_inplace_follow_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32) * 3
    g = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    for ours, theirs in [(nn.Hardtanh(-2.0, 0.5), torch.nn.Hardtanh(-2.0, 0.5)),
                         (nn.Hardtanh(inplace=True), torch.nn.Hardtanh()),
                         (nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
                         (nn.SiLU(), torch.nn.SiLU()), (nn.SiLU(inplace=True), torch.nn.SiLU())]:
        xt = torch.from_numpy(x.copy()).requires_grad_()
        yt = theirs(xt)
        yt.backward(torch.from_numpy(g))
        mine = x.copy()
        y = ours(mine)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
        if getattr(ours, "inplace", False):
            assert y is mine  # written into the caller's array
        else:
            np.testing.assert_array_equal(mine, x)
    with pytest.raises(TypeError, match="input"):
        F.silu(x.astype(np.float64), inplace=True)  # would write into a converted copy
    with pytest.raises(ValueError, match="max_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="grad_output"):
        F.silu_backward(g[0], x)
    with pytest.raises(TypeError, match="input"):
        F.gelu(np.array([True]))
