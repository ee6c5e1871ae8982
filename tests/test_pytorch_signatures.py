"""PyTorch's signatures where cnnkit's differed: Parameters read as arrays, one-element pair
arguments, adaptive pooling of CHW input and None sizes, avg_pool2d's divisor_override, softmax's
dtype, a 0-d prelu weight, dropout's inplace, Dropout2d, Softmax/LogSoftmax layers, Conv2d's
padding_mode, and the public names (__all__)."""

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import functional as F
from cnnkit import nn
from cnnkit import reference as R
from tolerance import assert_close
from torch_twins import assert_matches_torch


def test_parameters_pass_where_arrays_are_expected():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    conv, lin, prelu, bn = nn.Conv2d(3, 4, 3), nn.Linear(5, 2), nn.PReLU(3), nn.BatchNorm2d(3)
    np.testing.assert_array_equal(F.conv2d(x, conv.weight, conv.bias), F.conv2d(x, conv.weight.data, conv.bias.data))
    dx, dw, db = F.conv2d_backward(np.ones((2, 4, 4, 4)), x, conv.weight)
    assert dw.shape == conv.weight.shape
    v = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(F.linear(v, lin.weight, lin.bias), F.linear(v, lin.weight.data, lin.bias.data))
    np.testing.assert_array_equal(F.prelu(x, prelu.weight), F.prelu(x, prelu.weight.data))
    F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=True)
    # Read without a copy; converted on request; never silently copied when copy=False forbids it.
    assert np.asarray(conv.weight) is conv.weight.data
    assert np.asarray(conv.weight, np.float64).dtype == np.float64
    assert np.array(conv.weight) is not conv.weight.data
    with pytest.raises(ValueError, match="copy"):
        np.asarray(conv.weight, np.float64, copy=False)


def test_one_element_tuples_stand_for_both_sides():
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    np.testing.assert_array_equal(F.conv2d(x, w, None, (2,), (1,), (2,)), F.conv2d(x, w, None, 2, 1, 2))
    np.testing.assert_array_equal(F.max_pool2d(x, (3,), (2,)), F.max_pool2d(x, 3, 2))
    np.testing.assert_array_equal(F.avg_pool2d(x, (2,), padding=(1,)), F.avg_pool2d(x, 2, padding=1))
    layer = nn.Conv2d(3, 2, (3,), stride=(2,), padding=(1,))
    assert layer.kernel_size == (3, 3) and layer(x).shape == (1, 2, 5, 5)
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(x, w, None, (1, 2, 3))


def test_adaptive_avg_pool2d_chw_input_and_none_sizes():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 10)).astype(np.float32)
    # None keeps that dimension's own size: W for the width (it took H before).
    y = F.adaptive_avg_pool2d(x, (5, None))
    assert y.shape == (2, 3, 5, 10)
    assert_close(y, R.adaptive_avg_pool2d(x, 5, 10), R.adaptive_avg_pool2d(np.abs(x), 5, 10), 4,
                 "adaptive_avg_pool2d")
    np.testing.assert_array_equal(F.adaptive_avg_pool2d(x, (2,)), F.adaptive_avg_pool2d(x, 2))
    for size in [(5, None), (None, 3), 4]:
        ours = F.adaptive_avg_pool2d(x[0], size)
        theirs = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x[0]), size).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
        g = np.ones(ours.shape, np.float32)
        np.testing.assert_array_equal(F.adaptive_avg_pool2d_backward(g, x[0], size),
                                      F.adaptive_avg_pool2d_backward(g[None], x[:1], size)[0])
    with pytest.raises(ValueError, match="input"):
        F.adaptive_avg_pool2d(x[0, 0], 2)
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match="grad_output"):
        F.adaptive_avg_pool2d_backward(np.ones((3, 2, 2)), x, 2)


@given(h=st.integers(1, 8), w=st.integers(1, 8), k=st.integers(1, 3), s=st.integers(1, 3),
       ceil_mode=st.booleans(), include=st.booleans(), divisor=st.sampled_from([1, 3, -2, 7]),
       seed=st.integers(0, 2**31))
def test_avg_pool2d_divisor_override_matches_oracle(h, w, k, s, ceil_mode, include, divisor, seed):
    p = k // 2
    if h + 2 * p < k or w + 2 * p < k:
        return
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w)).astype(np.float32)
    args = (k, s, p, ceil_mode, include, divisor)
    y = F.avg_pool2d(x, *args)
    assert_close(y, R.avg_pool2d(x, *args), np.abs(R.avg_pool2d(np.abs(x), *args)), k * k + 2, "avg_pool2d")
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    assert_close(F.avg_pool2d_backward(g, x, *args), R.avg_pool2d_backward(g, x.shape, *args),
                 np.abs(R.avg_pool2d_backward(np.abs(g), x.shape, *args)), k * k + 2, "avg_pool2d_backward")


def test_avg_pool2d_divisor_override_layer_and_errors():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 7)).astype(np.float32)
    ours = nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4)
    theirs = torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-6)
    assert ours.backward(np.ones((1, 2, 4, 4), np.float32)).shape == x.shape
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="divisor_override"):
        F.avg_pool2d(x, 2, divisor_override=1.5)


def test_softmax_dtype():
    torch = pytest.importorskip("torch")
    x = (np.random.default_rng(4).standard_normal((3, 5)) * 30).astype(np.float32)
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        y64 = getattr(F, name)(x, 1, dtype=np.float64)
        assert y64.dtype == np.float64
        np.testing.assert_allclose(y64, getattr(R, name)(x, 1), rtol=1e-13, atol=1e-300)
        assert getattr(F, name)(x, 1, dtype=torch.float64).dtype == np.float64
        np.testing.assert_array_equal(getattr(F, name)(x, 1, dtype="float32"), getattr(F, name)(x, 1))
        y16 = getattr(F, name)(x, 1, dtype=np.float16)
        expected = getattr(torch, name)(torch.from_numpy(x), 1, dtype=torch.float16).float().numpy()
        assert y16.dtype == np.float16
        np.testing.assert_allclose(y16.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    assert F.softmax(np.zeros((0, 3)), 1, dtype=np.float64).shape == (0, 3)
    with pytest.raises(TypeError, match="dtype"):
        F.softmax(x, 1, dtype=np.int32)
    with pytest.raises(ValueError, match="dim"):
        F.softmax(x, 2, dtype=np.float64)


def test_prelu_with_a_0d_weight():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float32)
    w = np.float32(0.2)
    assert_close(F.prelu(x, w), R.prelu(x, w), np.abs(R.prelu(x, w)), 1, "prelu")
    g = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    dx, dw = F.prelu_backward(g, x, np.array(w))
    assert dw.shape == ()
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.tensor(0.2).requires_grad_()
    torch.nn.functional.prelu(xt, wt).backward(torch.from_numpy(g))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-5)


def test_dropout_takes_inplace_positionally():
    x = np.ones((50, 40), np.float32)
    y = F.dropout(x, 0.5, True, True)
    assert y is x and set(np.unique(x)) <= {0.0, 2.0}
    z = np.ones(10, np.float32)
    assert F.dropout(z, 0.5, False, True) is z and (z == 1).all()
    with pytest.raises(TypeError, match="input"):
        F.dropout(np.ones(4), 0.5, True, True)  # float64: the result would land in a copy
    layer = nn.Dropout(0.5, inplace=True)
    a = np.ones((8, 8), np.float32)
    assert layer(a) is a
    assert "inplace=True" in repr(layer)


def test_dropout2d_zeroes_whole_channels():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(7).standard_normal((20, 30, 4, 5)).astype(np.float32) + 5
    y, mask = F.dropout2d(x, 0.25, return_mask=True, generator=np.random.default_rng(8))
    assert mask.shape == (20, 30, 1, 1)
    kept = (y != 0).all(axis=(2, 3))
    assert ((y == 0).all(axis=(2, 3)) | kept).all()  # channels dropped whole
    np.testing.assert_allclose(y[kept], (x / 0.75)[kept], rtol=1e-6)
    assert 0.6 < kept.mean() < 0.9
    g = np.ones_like(x)
    np.testing.assert_array_equal(F.dropout2d_backward(g, mask), np.broadcast_to(mask, x.shape))
    np.testing.assert_array_equal(F.dropout2d(x, 0.25, False), x)
    with pytest.warns(UserWarning, match="3-D"):
        assert F.dropout2d(x[0], 0.5, return_mask=True)[1].shape == (30, 4, 1)
    with pytest.raises(ValueError, match="input"):
        F.dropout2d(x[0, 0], 0.5)
    with pytest.raises(ValueError, match="mask"):
        F.dropout2d_backward(g, mask[:2])
    layer = nn.Dropout2d(0.5)
    out = layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.where(out != 0, 2.0, 0.0))
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    assert type(torch.nn.Dropout2d(0.5)).__name__ == type(layer).__name__


def test_softmax_layers_match_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(9).standard_normal((2, 3, 4)).astype(np.float32)
    g = np.random.default_rng(10).standard_normal(x.shape).astype(np.float32)
    for ours, theirs in [(nn.Softmax(1), torch.nn.Softmax(1)), (nn.LogSoftmax(-1), torch.nn.LogSoftmax(-1)),
                         (nn.LogSoftmax(), torch.nn.LogSoftmax())]:
        xt = torch.from_numpy(x).requires_grad_()
        with pytest.warns(UserWarning, match="Implicit dimension") if ours.dim is None else _no_warning():
            y = ours(x)
        with pytest.warns(UserWarning) if ours.dim is None else _no_warning():
            yt = theirs(xt)
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding,stride", [(1, 1), ((2, 1), 2), ("same", 1)])
def test_conv2d_padding_mode_matches_torch(mode, padding, stride):
    torch = pytest.importorskip("torch")
    ours = nn.Conv2d(3, 4, (3, 4), stride=stride, padding=padding, padding_mode=mode)
    theirs = torch.nn.Conv2d(3, 4, (3, 4), stride=stride, padding=padding, padding_mode=mode)
    x = np.random.default_rng(11).standard_normal((2, 3, 7, 6)).astype(np.float32)
    assert_matches_torch(torch, ours, theirs, x)


def test_conv2d_padding_mode_errors():
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    layer = nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        layer(np.zeros((1, 1, 3, 3), np.float32))  # reflect padding 3 on a 3-wide input


def test_public_names_are_listed_in_all():
    functions = sorted(name for name, value in vars(F).items()
                       if inspect.isfunction(value) and value.__module__ == F.__name__ and not name.startswith("_"))
    assert sorted(F.__all__) == functions
    for module in (nn, cnnkit.nn.layers, cnnkit.nn.losses, cnnkit.nn.module):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    classes = {name for name, value in vars(cnnkit.nn.layers).items()
               if inspect.isclass(value) and value.__module__ == "cnnkit.nn.layers" and not name.startswith("_")}
    assert classes == set(cnnkit.nn.layers.__all__) and classes <= set(nn.__all__)
    for name in ["NLLLoss", "LogSoftmax", "Softmax", "Hardtanh", "Dropout2d", "ConvTranspose2d", "GELU", "SiLU"]:
        assert name in nn.__all__
