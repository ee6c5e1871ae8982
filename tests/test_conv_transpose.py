"""conv_transpose2d / nn.ConvTranspose2d against the oracle's scatter definition and PyTorch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import nn
from cnnkit import reference as R
from test_linear_loss import _numeric_gradient
from tolerance import assert_close
from torch_twins import assert_matches_torch


@st.composite
def cases(draw):
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    hw = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    # Padding that leaves a non-empty output.
    padding = tuple(draw(st.integers(0, max(0, ((n - 1) * s + d * (k - 1) + op) // 2)))
                    for n, s, d, k, op in zip(hw, stride, dilation, kernel, output_padding))
    return dict(n=draw(st.integers(1, 2)), cin=cin, cout=cout, hw=hw, kernel=kernel, stride=stride,
                padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()))


@given(case=cases(), seed=st.integers(0, 2**31))
def test_conv_transpose2d_matches_oracle(case, seed):
    c = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c["n"], c["cin"]) + c["hw"]).astype(np.float32)
    w = rng.standard_normal((c["cin"], c["cout"] // c["groups"]) + c["kernel"]).astype(np.float32)
    b = rng.standard_normal(c["cout"]).astype(np.float32) if c["bias"] else None
    args = (c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"])
    ref_args = (c["stride"], c["padding"], c["output_padding"], c["dilation"], c["groups"])
    y = F.conv_transpose2d(x, w, b, *args)
    expected = R.conv_transpose2d(x, w, b, *ref_args)
    magnitude = R.conv_transpose2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *ref_args)
    K = c["cin"] // c["groups"] * c["kernel"][0] * c["kernel"][1]
    assert_close(y, expected, magnitude, K, "conv_transpose2d")

    g = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv_transpose2d_backward(g, x, w, *args)
    rdx, rdw, rdb = R.conv_transpose2d_backward(g, x, w, *ref_args)
    adx, adw, adb = R.conv_transpose2d_backward(np.abs(g), np.abs(x), np.abs(w), *ref_args)
    assert_close(dx, rdx, adx, c["cout"] // c["groups"] * c["kernel"][0] * c["kernel"][1],
                 "conv_transpose2d_backward input")
    assert_close(dw, rdw, adw, g.shape[0] * g.shape[2] * g.shape[3], "conv_transpose2d_backward weight")
    assert_close(db, rdb, adb, g.shape[0] * g.shape[2] * g.shape[3], "conv_transpose2d_backward bias")
    # Unbatched input: the same as a batch of one.
    np.testing.assert_array_equal(F.conv_transpose2d(x[0], w, b, *args), y[0])


def test_conv_transpose2d_is_the_input_gradient_of_conv2d():
    # <conv_transpose2d(y, w), x> == <y, conv2d(x, w)>: the adjoint, with integers so exactly.
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, (2, 3, 9, 8)).astype(np.float32)
    w = rng.integers(-4, 5, (4, 3, 3, 3)).astype(np.float32)
    conv = F.conv2d(x, w, None, 2, 1)
    y = rng.integers(-4, 5, conv.shape).astype(np.float32)
    t = F.conv_transpose2d(y, w, None, 2, 1, output_padding=(0, 1))
    assert t.shape == x.shape
    assert float((t.astype(np.float64) * x).sum()) == float((y.astype(np.float64) * conv).sum())


def test_conv_transpose2d_empty_and_errors():
    w = np.ones((2, 3, 3, 3), np.float32)
    assert F.conv_transpose2d(np.ones((0, 2, 4, 4), np.float32), w).shape == (0, 3, 6, 6)
    y = F.conv_transpose2d(np.ones((1, 2, 0, 3), np.float32), w, np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(y, np.full((1, 3, 2, 5), 2.0))  # nothing but the bias
    dx, dw, db = F.conv_transpose2d_backward(np.ones((1, 3, 2, 5)), np.ones((1, 2, 0, 3)), w)
    assert dx.shape == (1, 2, 0, 3) and not dw.any() and db.tolist() == [10.0] * 3
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="channels"):
        F.conv_transpose2d(np.ones((1, 3, 4, 4), np.float32), w)
    with pytest.raises(ValueError, match="groups"):
        F.conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match="weight"):
        F.conv_transpose2d(x, w[0])
    with pytest.raises(ValueError, match="input"):
        F.conv_transpose2d(x[0, 0], w)
    with pytest.raises(ValueError, match="padding"):
        F.conv_transpose2d(x, w, padding="same")
    with pytest.raises(ValueError, match="negative"):
        F.conv_transpose2d(np.ones((1, 2, 1, 1), np.float32), w, padding=3)
    with pytest.raises(ValueError, match="bias"):
        F.conv_transpose2d(x, w, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        F.conv_transpose2d_backward(np.ones((1, 3, 5, 5)), x, w)
    with pytest.raises(ValueError, match="stride"):
        F.conv_transpose2d(x, w, stride=0)
    with pytest.raises(OverflowError, match="stride"):
        F.conv_transpose2d(x, w, stride=2**62)  # an output no 64-bit size holds


def test_conv_transpose2d_layer_matches_torch():
    torch = pytest.importorskip("torch")
    ours = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    assert_matches_torch(torch, ours, theirs, x)
    xt = torch.from_numpy(x)
    # output_size picks the output padding, as PyTorch's forward(input, output_size).
    for size in [(9, 11), (10, 12), (1, 1, 10, 11)]:
        assert ours(x, output_size=size).shape[2:] == tuple(theirs(xt, output_size=size).shape[2:])
    with pytest.raises(ValueError, match="output size"):
        ours(x, output_size=(12, 12))
    # PyTorch's default initialisation bounds: weight and bias within 1/sqrt(fan_in), fan_in = 3*3*3.
    assert np.abs(ours.bias.data).max() <= 1 / np.sqrt(27)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


def test_oracle_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 3, 2, 3)), rng.standard_normal(3)
    args = ((2, 1), (1, 0), (1, 0), (1, 2), 1)
    g = rng.standard_normal(R.conv_transpose2d(x, w, b, *args).shape)
    dx, dw, db = R.conv_transpose2d_backward(g, x, w, *args)
    np.testing.assert_allclose(dx, _numeric_gradient(lambda v: np.sum(g * R.conv_transpose2d(v, w, b, *args)), x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, _numeric_gradient(lambda v: np.sum(g * R.conv_transpose2d(x, v, b, *args)), w),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, _numeric_gradient(lambda v: np.sum(g * R.conv_transpose2d(x, w, v, *args)), b),
                               rtol=1e-6, atol=1e-8)
