"""Maxout (functional and layers) against the oracle and torch; DropConnect's masks, eval path and gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import functional as F
from cnnkit import nn, reference
from tolerance import assert_close


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ----------------------------------------------------------------------------
# Maxout
# ----------------------------------------------------------------------------


@given(n=st.integers(0, 3), units=st.integers(1, 4), k=st.integers(1, 4), spatial=st.sampled_from([(), (3,), (2, 5)]),
       last=st.booleans(), small_ints=st.booleans(), seed=st.integers(0, 2**31))
def test_maxout_matches_the_oracle(n, units, k, spatial, last, small_ints, seed):
    rng = np.random.default_rng(seed)
    shape = (n, *spatial, units * k) if last else (n, units * k, *spatial)
    dim = -1 if last else 1
    # Small integers make ties likely: the first piece must win them, as in the oracle.
    x = (rng.integers(-3, 4, shape) if small_ints else rng.standard_normal(shape)).astype(np.float32)
    y = F.maxout(x, k, dim)
    np.testing.assert_array_equal(y, reference.maxout(x, k, dim))
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(F.maxout_backward(g, x, k, dim), reference.maxout_backward(g, x, k, dim))


def test_maxout_routes_the_gradient_to_the_winning_piece_by_hand():
    x = np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -1.0, np.nan, 0.0, 7.0]], np.float32)
    np.testing.assert_array_equal(F.maxout(x, 3), [[5.0, -1.0, np.nan]])
    dx = F.maxout_backward(np.array([[10.0, 20.0, 30.0]], np.float32), x, 3)
    # Ties go to the first piece; a NaN piece wins its unit.
    np.testing.assert_array_equal(dx, [[0, 10, 0, 20, 0, 0, 30, 0, 0]])


def test_maxout_errors_name_the_argument():
    x = _rand(2, 6, 3)
    with pytest.raises(ValueError, match="multiple of pool_size=4"):
        F.maxout(x, 4)
    with pytest.raises(ValueError, match="pool_size must be >= 1"):
        F.maxout(x, 0)
    with pytest.raises(ValueError, match="dim=3 is out of range"):
        F.maxout(x, 2, dim=3)
    with pytest.raises(TypeError, match="pool_size"):
        F.maxout(x, 2.0)
    with pytest.raises(ValueError, match="grad_output shape"):
        F.maxout_backward(np.zeros((2, 6, 3), np.float32), x, 2)
    with pytest.raises(ValueError, match="pieces"):
        nn.MaxoutLinear(3, 2, pieces=0)


MAXOUT_LAYERS = [
    ("MaxoutLinear", lambda: nn.MaxoutLinear(5, 3, pieces=3), (4, 5)),
    ("MaxoutConv2d", lambda: nn.MaxoutConv2d(2, 3, 3, padding=1, pieces=2), (2, 2, 5, 5)),
    ("Conv2d+Maxout", lambda: nn.Sequential(nn.Conv2d(2, 6, 3), nn.Maxout(3)), (2, 2, 4, 4)),
]


@pytest.mark.parametrize("name,make,shape", MAXOUT_LAYERS, ids=[m[0] for m in MAXOUT_LAYERS])
def test_maxout_layers_match_finite_differences(name, make, shape):
    cnnkit.manual_seed(2)
    ok, worst = cnnkit.gradcheck(make(), _rand(*shape, seed=1), eps=1e-3, samples=30, tolerance=3e-2)
    assert ok, f"{name}: {worst}"


@pytest.mark.parametrize("conv", [False, True])
def test_maxout_layers_match_torch(conv):
    torch = pytest.importorskip("torch")
    cnnkit.manual_seed(0)
    k, out = 3, 4
    if conv:
        ours, theirs = nn.MaxoutConv2d(2, out, 3, pieces=k), torch.nn.Conv2d(2, k * out, 3)
        x = _rand(2, 2, 6, 6)
    else:
        ours, theirs = nn.MaxoutLinear(5, out, pieces=k), torch.nn.Linear(5, k * out)
        x = _rand(6, 5)
    theirs.load_state_dict({key: torch.from_numpy(v) for key, v in ours.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    z = theirs(xt)
    # torch's own grouped maximum: unit j over pieces j*k .. j*k + k - 1.
    expected = z.unflatten(1, (out, k)).amax(2) if conv else z.unflatten(-1, (out, k)).amax(-1)
    y = ours(x)
    assert y.shape == tuple(expected.shape)
    g = _rand(*y.shape, seed=3)
    expected.backward(torch.tensor(g))
    dx = ours.backward(g)
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_maxout_layer_flops_count_every_piece():
    layer = nn.MaxoutLinear(10, 4, pieces=3)
    assert layer.flops((1, 10), (1, 4)) == nn.Linear(10, 12).flops((1, 10), (1, 12))


# ----------------------------------------------------------------------------
# DropConnect
# ----------------------------------------------------------------------------


def test_dropconnect_eval_uses_the_weights_unchanged():
    cnnkit.manual_seed(0)
    dc, plain = nn.DropConnectLinear(6, 4, p=0.5), nn.Linear(6, 4)
    plain.load_state_dict(dc.state_dict())
    x = _rand(3, 6)
    np.testing.assert_array_equal(dc.eval()(x), plain(x))
    assert dc.weight_mask is None
    conv, plain_conv = nn.DropConnectConv2d(2, 3, 3, p=0.3), nn.Conv2d(2, 3, 3)
    plain_conv.load_state_dict(conv.state_dict())
    xc = _rand(2, 2, 5, 5)
    np.testing.assert_array_equal(conv.eval()(xc), plain_conv(xc))
    np.testing.assert_array_equal(conv.backward(np.ones((2, 3, 3, 3), np.float32)),
                                  plain_conv.backward(np.ones((2, 3, 3, 3), np.float32)))


def test_dropconnect_training_masks_the_weights_and_their_gradient():
    cnnkit.manual_seed(1)
    p = 0.25
    layer = nn.DropConnectLinear(40, 50, p=p)
    x, g = _rand(7, 40), _rand(7, 50, seed=1)
    y = layer(x)
    mask = layer.weight_mask
    assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - p))}
    assert abs((mask == 0).mean() - p) < 0.03  # 2000 weights: the standard error is 0.01
    w = layer.weight.data.astype(np.float64) * mask
    assert_close(y, reference.linear(x, w, layer.bias.data), reference.linear(np.abs(x), np.abs(w)) + np.abs(layer.bias.data), 40,
                 "DropConnectLinear")
    dx = layer.backward(g)
    rdx, rdw, rdb = reference.linear_backward(g, x, w)
    assert_close(dx, rdx, reference.linear_backward(np.abs(g), np.abs(x), np.abs(w))[0], 50, "DropConnect dx")
    assert_close(layer.weight.grad, rdw * mask, np.abs(g).T @ np.abs(x) * mask, 7, "DropConnect dw")
    assert np.all(layer.weight.grad[mask == 0] == 0)
    assert_close(layer.bias.grad, rdb, np.abs(g).sum(0), 7, "DropConnect db")
    layer(x)
    assert not np.array_equal(layer.weight_mask, mask), "a new mask every forward"


def test_dropconnect_conv_training_matches_a_conv_with_the_masked_weight():
    cnnkit.manual_seed(2)
    layer = nn.DropConnectConv2d(3, 4, 3, padding=1, p=0.5)
    x, g = _rand(2, 3, 6, 6), _rand(2, 4, 6, 6, seed=1)
    y = layer(x)
    masked = layer.weight.data * layer.weight_mask
    np.testing.assert_array_equal(y, F.conv2d(x, masked, layer.bias.data, 1, 1))
    dx = layer.backward(g)
    rdx, rdw, _ = F.conv2d_backward(g, x, masked, 1, 1)
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_array_equal(layer.weight.grad, rdw * layer.weight_mask)


class _SameMask(nn.Module):
    """Reseeds before each forward, so finite differences see one fixed mask."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        cnnkit.manual_seed(11)
        return self.inner(x)

    def backward(self, grad_output, input_grad=True):
        return self.inner.backward(grad_output, input_grad)


@pytest.mark.parametrize("make,shape", [(lambda: nn.DropConnectLinear(5, 4, p=0.4), (3, 5)),
                                        (lambda: nn.DropConnectConv2d(2, 3, 3, p=0.4), (2, 2, 5, 5))])
def test_dropconnect_gradients_match_finite_differences(make, shape):
    cnnkit.manual_seed(0)
    ok, worst = cnnkit.gradcheck(_SameMask(make()), _rand(*shape, seed=4), samples=30,
                                 generator=np.random.default_rng(0))
    assert ok, worst


def test_dropconnect_is_reproducible_and_validates_p():
    masks = []
    for _ in range(2):
        cnnkit.manual_seed(5)
        layer = nn.DropConnectLinear(4, 4)
        layer(_rand(2, 4))
        masks.append(layer.weight_mask)
    np.testing.assert_array_equal(*masks)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="DropConnect probability"):
            nn.DropConnectLinear(2, 2, p=bad)
