"""flatten, pad, interpolate and one_hot against the float64 oracle, PyTorch where installed, and
their error paths."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import reference as R
from tolerance import assert_close

MODES = ["constant", "reflect", "replicate", "circular"]


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(MODES))
    k = draw(st.integers(1, 3))
    ndim = draw(st.integers(k + 1, k + 2)) if mode != "constant" else draw(st.integers(k, 4))
    shape = [draw(st.integers(1, 3))] * (ndim - k) + [draw(st.integers(1, 5)) for _ in range(k)]
    pads = []
    for i in range(k):
        n = shape[-1 - i]
        # Within each mode's limits: reflect < n, circular <= n; constant may crop.
        hi = {"reflect": n - 1, "circular": n, "replicate": 4, "constant": 3}[mode]
        lo = -(n // 2) if mode == "constant" else 0
        pads += [draw(st.integers(lo, hi)), draw(st.integers(lo, hi))]
    return mode, tuple(shape), tuple(pads)


@given(case=pad_cases(), seed=st.integers(0, 2**31), value=st.sampled_from([None, 2.5]))
def test_pad_matches_oracle(case, seed, value):
    mode, shape, pads = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    kw = {"value": value} if mode == "constant" else {}
    y = F.pad(x, pads, mode, **kw)
    expected = R.pad(x, pads, mode, 0.0 if value is None else value)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)  # copies: exact
    g = rng.standard_normal(y.shape).astype(np.float32)
    # Each input element gathers at most a few copies along each padded axis.
    K = 3 ** (len(pads) // 2)
    assert_close(F.pad_backward(g, pads, mode), R.pad_backward(g, shape, pads, mode),
                 R.pad_backward(np.abs(g), shape, pads, mode), K, "pad_backward")


def test_pad_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x4 = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    for mode in MODES:
        for x, pads in [(x4[0], (1, 2)), (x4, (2, 0, 1, 3)), (x4, (0, 3, 2, 2)), (x4[None], (1, 0, 1, 1, 0, 1))]:
            xt = torch.from_numpy(x).requires_grad_()
            yt = torch.nn.functional.pad(xt, pads, mode)
            g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
            yt.backward(torch.from_numpy(g))
            np.testing.assert_array_equal(F.pad(x, pads, mode), yt.detach().numpy())
            np.testing.assert_allclose(F.pad_backward(g, pads, mode), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_pad_errors_name_the_argument():
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="mode"):
        F.pad(x, (1, 1), "mirror")
    with pytest.raises(ValueError, match="pad"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="pad"):
        F.pad(x, (1,) * 10)
    with pytest.raises(ValueError, match="reflect"):
        F.pad(x, (3, 0, 0, 0), "reflect")  # not smaller than the width 3
    with pytest.raises(ValueError, match="circular"):
        F.pad(x, (0, 4, 0, 0), "circular")
    with pytest.raises(ValueError, match="negative"):
        F.pad(x, (-1, 0, 0, 0), "replicate")
    with pytest.raises(ValueError, match="crops more"):
        F.pad(x, (-2, -2))
    with pytest.raises(ValueError, match="crops more"):
        F.pad(x, (-4, 5))  # a size of 4 in the end, but 4 columns cropped from 3
    with pytest.raises(ValueError, match="4-D"):
        F.pad(x, (1, 1, 1, 1, 1, 1, 1, 1), "reflect")  # pads every dimension of a 4-D input
    with pytest.raises(ValueError, match="2-D"):
        F.pad(np.zeros(4, np.float32), (1, 1), "replicate")  # needs a leading dimension
    with pytest.raises(ValueError, match="value"):
        F.pad(x, (1, 1, 1, 1), "reflect", value=1.0)
    with pytest.raises(TypeError, match="pad"):
        F.pad(x, (1.5, 1))
    with pytest.raises(ValueError, match="grad_output"):
        F.pad_backward(np.zeros((1, 2, 3, 1), np.float32), (1, 1))
    with pytest.raises(OverflowError, match="pad"):
        F.pad(x, (2**63, 0))


@st.composite
def interpolate_cases(draw):
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "trilinear"]))
    spatial = {"linear": 1, "bilinear": 2, "trilinear": 3}.get(mode) or draw(st.integers(1, 3))
    shape = (draw(st.integers(0, 2)), draw(st.integers(1, 2))) + tuple(
        draw(st.integers(1, 6)) for _ in range(spatial))
    align = draw(st.booleans()) if mode in ("linear", "bilinear", "trilinear") else False
    if draw(st.booleans()):
        size = tuple(draw(st.integers(1, 9)) for _ in range(spatial))
        return mode, shape, align, {"size": size}, size, None
    # Scale factors whose reciprocals round up in float32, where PyTorch's float32 index
    # arithmetic and the oracle's exact fractions agree.
    factors = tuple(draw(st.sampled_from([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.25, 3.0])) for _ in range(spatial))
    size = tuple(math.floor(n * f) for n, f in zip(shape[2:], factors))
    if min(size) < 1:
        factors = tuple(max(f, 1.0) for f in factors)
        size = tuple(math.floor(n * f) for n, f in zip(shape[2:], factors))
    return mode, shape, align, {"scale_factor": factors}, size, factors


@given(case=interpolate_cases(), seed=st.integers(0, 2**31))
def test_interpolate_matches_oracle(case, seed):
    mode, shape, align, kw, size, factors = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    ac = align if mode in ("linear", "bilinear", "trilinear") else None
    y = F.interpolate(x, mode=mode, align_corners=ac, **kw)
    assert y.shape == shape[:2] + size and y.dtype == np.float32
    K = 2 ** len(size)
    assert_close(y, R.interpolate(x, size, mode, align, factors),
                 R.interpolate(np.abs(x), size, mode, align, factors), K, "interpolate")
    g = rng.standard_normal(y.shape).astype(np.float32)
    # An input pixel receives from up to (ceil(out / in) + 2) outputs per axis.
    K = math.prod(-(-o // n) + 2 for o, n in zip(size, shape[2:]))
    assert_close(F.interpolate_backward(g, x, mode=mode, align_corners=ac, **kw),
                 R.interpolate_backward(g, shape, mode, align, factors),
                 R.interpolate_backward(np.abs(g), shape, mode, align, factors), K, "interpolate_backward")


@given(seed=st.integers(0, 2**31), h=st.integers(1, 7), w=st.integers(1, 7),
       sh=st.one_of(st.floats(0.3, 3.7), st.sampled_from([1.1, 2.05, 0.95])),
       sw=st.one_of(st.floats(0.3, 3.7), st.sampled_from([1.1, 2.05, 0.95])),
       mode=st.sampled_from([("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True)]),
       recompute=st.sampled_from([None, True]))
def test_interpolate_matches_torch_for_any_scale_factor(seed, h, w, sh, sw, mode, recompute):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w)).astype(np.float32)
    if math.floor(h * sh) < 1 or math.floor(w * sw) < 1:
        return
    mode, align_corners = mode
    kw = dict(scale_factor=(sh, sw), mode=mode, align_corners=align_corners, recompute_scale_factor=recompute)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.interpolate(xt, **kw)
    g = np.random.default_rng(seed + 1).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(F.interpolate(x, **kw), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.interpolate_backward(g, x, **kw), xt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_interpolate_errors_name_the_argument():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="mode"):
        F.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match="3-D"):
        F.interpolate(x, size=3, mode="linear")
    with pytest.raises(ValueError, match="4-D"):
        F.interpolate(x[0], size=3, mode="bilinear")
    with pytest.raises(ValueError, match="size and scale_factor"):
        F.interpolate(x, size=3, scale_factor=2.0)
    with pytest.raises(ValueError, match="size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(x, size=3, align_corners=True)
    with pytest.raises(ValueError, match="size"):
        F.interpolate(x, size=(3, 3, 3))
    with pytest.raises(ValueError, match="scale_factor"):
        F.interpolate(x, scale_factor=-1.0)
    with pytest.raises(ValueError, match="sizes must be > 0"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(ValueError, match="antialias"):
        F.interpolate(x, size=2, mode="bilinear", antialias=True)
    with pytest.raises(ValueError, match="grad_output"):
        F.interpolate_backward(np.zeros((1, 2, 3, 3), np.float32), x, size=2)
    with pytest.raises(OverflowError, match="output size"):
        F.interpolate(x, scale_factor=1e300)


def test_flatten_follows_torch_flatten():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert F.flatten(x).shape == (120,)
    assert F.flatten(x, 1).shape == (2, 60)
    assert F.flatten(x, 1, 2).shape == (2, 12, 5)
    assert F.flatten(x, -2).shape == (2, 3, 20)
    assert F.flatten(np.float32(3)).shape == (1,)
    assert F.flatten(np.zeros((0, 3, 2)), 1).shape == (0, 6)
    assert F.flatten(np.arange(6).reshape(2, 3)).dtype == np.arange(1).dtype  # no conversion
    g = np.ones((2, 60), np.float32)
    assert F.flatten_backward(g, x).shape == x.shape
    with pytest.raises(ValueError, match="start_dim"):
        F.flatten(x, 3, 1)
    with pytest.raises(IndexError, match="end_dim"):
        F.flatten(x, 0, 4)
    with pytest.raises(ValueError, match="start_dim"):  # AxisError: a ValueError and an IndexError
        F.flatten(x, -5)
    with pytest.raises(ValueError, match="grad_output"):
        F.flatten_backward(np.ones(7, np.float32), x)


@given(shape=st.lists(st.integers(0, 4), max_size=3), classes=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_one_hot_matches_oracle(shape, classes, seed):
    t = np.random.default_rng(seed).integers(0, classes, shape)
    out = F.one_hot(t, classes)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, R.one_hot(t, classes))
    if t.size:
        np.testing.assert_array_equal(F.one_hot(t), R.one_hot(t, int(t.max()) + 1))


def test_one_hot_matches_torch_and_rejects_bad_input():
    torch = pytest.importorskip("torch")
    t = np.array([[0, 3], [2, 2]])
    np.testing.assert_array_equal(F.one_hot(t), torch.nn.functional.one_hot(torch.from_numpy(t)).numpy())
    np.testing.assert_array_equal(F.one_hot(np.uint8(2), 4), [0, 0, 1, 0])
    with pytest.raises(IndexError, match="num_classes"):
        F.one_hot(t, 3)
    with pytest.raises(IndexError, match="non-negative"):
        F.one_hot(np.array([-1, 0]), 3)
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        F.one_hot(np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="num_classes"):
        F.one_hot(t, -2)


def test_oracle_backwards_are_the_adjoints_of_the_forwards():
    # For a linear op f, d/dx sum(g * f(x)) = f^T g: <f(x), g> == <x, f^T g>.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 5, 4))
    for mode in MODES:
        y = R.pad(x, (1, 2, 3, 1), mode)
        g = rng.standard_normal(y.shape)
        assert np.sum(y * g) == pytest.approx(np.sum(x * R.pad_backward(g, x.shape, (1, 2, 3, 1), mode)))
    for mode, align in [("nearest", False), ("nearest-exact", False), ("bilinear", False), ("bilinear", True)]:
        y = R.interpolate(x, (7, 3), mode, align)
        g = rng.standard_normal(y.shape)
        assert np.sum(y * g) == pytest.approx(np.sum(x * R.interpolate_backward(g, x.shape, mode, align)))
