"""max_pool2d / avg_pool2d forward and backward against the float64 oracle and PyTorch."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnkit
import cnnkit.functional as F
import cnnkit.reference as R
from cnnkit import _C
from devices import CPU
from tolerance import assert_close, assert_exact


@st.composite
def pool_configs(draw, dilation=True):
    """A valid pooling geometry and input shape; may include overlapping windows."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, eff_h - 2 * ph), eff_h - 2 * ph + 9))
    w = draw(st.integers(max(1, eff_w - 2 * pw), eff_w - 2 * pw + 9))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return dict(shape=(n, c, h, w), kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), ceil_mode=draw(st.booleans()))


def _windows_per_input(cfg):
    """Upper bound on the windows covering one input element: the backward's K."""
    (kh, kw), (sh, sw) = cfg["kernel_size"], cfg["stride"]
    return -(-kh // sh) * -(-kw // sw)


def _assert_avg_backward_matches_oracle(g, x, cfg, args, device=CPU):
    """avg_pool2d_backward on ``device`` against the oracle; K = how many windows can cover one input."""
    grad = device.call(F.avg_pool2d_backward, g, x, **args)
    assert_close(grad, R.avg_pool2d_backward(g, x.shape, **args),
                 R.avg_pool2d_backward(np.abs(g), x.shape, **args), _windows_per_input(cfg),
                 "avg_pool2d_backward")


def _max_pool(x, cfg, reference=False):
    """_C entry (fast or C++ reference); ValueError for a window that is padding only."""
    return _C.max_pool2d(x, cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"],
                         cfg["ceil_mode"], True, reference)


@given(cfg=pool_configs(), seed=st.integers(0, 2**31))
def test_max_pool_matches_oracle(isa, device, cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    args = {k: cfg[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    try:
        out, idx = device.call(F.max_pool2d, x, return_indices=True, **args)
    except ValueError as e:
        assume("only padding" not in str(e))
        raise
    expected, expected_idx = R.max_pool2d(x, **args)
    # Max pooling selects, it never rounds: exact values and indices.
    assert_exact(out, expected, "max_pool2d")
    np.testing.assert_array_equal(idx, expected_idx)
    if device.name == "cpu":
        ref_out, ref_idx = _max_pool(x, cfg, reference=True)
        np.testing.assert_array_equal(ref_out, out)
        np.testing.assert_array_equal(ref_idx, idx)

    g = rng.standard_normal(out.shape).astype(np.float32)
    grad = device.call(F.max_pool2d_backward, g, x, idx, **args)
    assert_close(grad, R.max_pool2d_backward(g, x.shape, expected_idx),
                 R.max_pool2d_backward(np.abs(g), x.shape, expected_idx),
                 _windows_per_input(cfg), "max_pool2d_backward")


@given(cfg=pool_configs(dilation=False), count_include_pad=st.booleans(), seed=st.integers(0, 2**31))
def test_avg_pool_matches_oracle(isa, device, cfg, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    args = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                ceil_mode=cfg["ceil_mode"], count_include_pad=count_include_pad)
    kh, kw = cfg["kernel_size"]
    out = device.call(F.avg_pool2d, x, **args)
    assert_close(out, R.avg_pool2d(x, **args), R.avg_pool2d(np.abs(x), **args), kh * kw,
                 "avg_pool2d")
    if device.name == "cpu":
        # The direct kernel visits each window's taps in the reference's order: bit-identical.
        ref = _C.avg_pool2d(x, cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["ceil_mode"],
                            count_include_pad, True)
        np.testing.assert_array_equal(ref, out)

    g = rng.standard_normal(out.shape).astype(np.float32)
    _assert_avg_backward_matches_oracle(g, x, cfg, args, device)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pool_larger_planes_threaded(isa, threads, stride):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((3, 8, 37, 41)).astype(np.float32)
    out, idx = F.max_pool2d(x, 3, stride, 1, return_indices=True)
    expected, expected_idx = R.max_pool2d(x, 3, stride, 1)
    assert_exact(out, expected, "max_pool2d")
    np.testing.assert_array_equal(idx, expected_idx)
    avg = F.avg_pool2d(x, 3, stride, 1, ceil_mode=True, count_include_pad=False)
    assert_close(avg, R.avg_pool2d(x, 3, stride, 1, True, False),
                 R.avg_pool2d(np.abs(x), 3, stride, 1, True, False), 9, "avg_pool2d")
    g = rng.standard_normal(avg.shape).astype(np.float32)
    assert_close(F.avg_pool2d_backward(g, x, 3, stride, 1, True, False),
                 R.avg_pool2d_backward(g, x.shape, 3, stride, 1, True, False),
                 R.avg_pool2d_backward(np.abs(g), x.shape, 3, stride, 1, True, False), 9,
                 "avg_pool2d_backward")


def test_integer_fill_is_exact(isa, threads):
    rng = np.random.default_rng(7)
    x = rng.integers(-8, 9, size=(2, 5, 16, 18)).astype(np.float32)
    out, idx = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    expected, expected_idx = R.max_pool2d(x, 3, 1, 1)
    assert_exact(out, expected, "max_pool2d")
    g = rng.integers(-8, 9, size=out.shape).astype(np.float32)
    assert_exact(F.max_pool2d_backward(g, x, idx, 3, 1, 1),
                 R.max_pool2d_backward(g, x.shape, expected_idx), "max_pool2d_backward")
    # A 2x2 window divides by 4: a power of two, so the average is exact too.
    assert_exact(F.avg_pool2d(x, 2), R.avg_pool2d(x, 2), "avg_pool2d")
    g = rng.integers(-8, 9, size=(2, 5, 8, 9)).astype(np.float32)
    assert_exact(F.avg_pool2d_backward(g, x, 2), R.avg_pool2d_backward(g, x.shape, 2),
                 "avg_pool2d_backward")


def test_stride_none_means_kernel_size():
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    np.testing.assert_array_equal(F.max_pool2d(x, 2), F.max_pool2d(x, 2, 2))
    np.testing.assert_array_equal(F.avg_pool2d(x, (2, 4)), F.avg_pool2d(x, (2, 4), (2, 4)))
    assert F.max_pool2d(x, 2).shape == (2, 3, 4, 4)


def test_nan_in_window_propagates_and_routes_gradient():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(out[0, 0, 0, 0])
    assert not np.isnan(out[0, 0, 1:, :]).any() and not np.isnan(out[0, 0, :, 1]).any()
    # PyTorch's scan keeps the last NaN of the window (row-major).
    assert idx[0, 0, 0, 0] == 1 * 4 + 0
    grad = F.max_pool2d_backward(np.ones_like(out), x, idx, 2)
    assert grad[0, 0, 1, 0] == 1 and grad[0, 0, :2, :2].sum() == 1


def test_all_minus_inf_window_gives_minus_inf_with_valid_index():
    x = np.full((1, 2, 5, 5), -np.inf, dtype=np.float32)
    out, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert np.all(out == -np.inf)
    assert idx.min() >= 0 and idx.max() < 25
    _, expected_idx = R.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(idx, expected_idx)
    # Each index lies inside its own window.
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            h, w = divmod(int(idx[0, 0, i, j]), 5)
            assert 2 * i - 1 <= h <= 2 * i + 1 and 2 * j - 1 <= w <= 2 * j + 1


def test_ceil_mode_drops_window_starting_in_padding():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    # ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start at 6 - 1 = 5: the padding.
    assert F.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)
    assert F.avg_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)
    # Without padding the overhanging window starts inside the input and is kept.
    assert F.max_pool2d(x, 2, 2, 0, ceil_mode=True).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 2, 2, 0, ceil_mode=False).shape == (1, 1, 2, 2)


@given(kh=st.integers(1, 3), out_h=st.integers(1, 5), extra_h=st.integers(0, 2),
       out_w=st.sampled_from([1, 5, 7, 8, 9, 15, 16, 17, 31, 33]), extra_w=st.integers(0, 1),
       planes=st.sampled_from([(1, 1), (2, 3), (16, 40)]), seed=st.integers(0, 2**31))
def test_avg_backward_of_windows_tiling_the_input_in_pairs_has_the_references_bits(
        isa, threads, kh, out_h, extra_h, out_w, extra_w, planes, seed):
    """kernel (kh, 2) at its own stride without padding (LeNet's 2x2 pooling) takes a path of its
    own: each input element gets one share, rows and a column past the last window get zeros.
    Bit for bit the native reference's result, NaN and -0 included, and within the oracle's bound."""
    assume(extra_h < kh)
    shape = (*planes, kh * out_h + extra_h, 2 * out_w + extra_w)
    rng = np.random.default_rng(seed)
    x = np.zeros(shape, np.float32)
    g = rng.standard_normal((*planes, out_h, out_w)).astype(np.float32)
    g.flat[rng.integers(0, g.size)] = -0.0
    g.flat[rng.integers(0, g.size)] = np.nan
    got = F.avg_pool2d_backward(g, x, (kh, 2), (kh, 2))
    want = _C.avg_pool2d_backward(g, shape, (kh, 2), (kh, 2), (0, 0), False, True, True)
    assert got.tobytes() == want.tobytes()
    ok = ~np.isnan(want)
    assert_close(got[ok], R.avg_pool2d_backward(g, shape, (kh, 2), (kh, 2))[ok],
                 R.avg_pool2d_backward(np.abs(g), shape, (kh, 2), (kh, 2))[ok], 1, "avg_pool2d_backward")


def test_avg_divisor_rule_with_ceil_mode_and_padding():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    # kernel 3, stride 2, padding 1, ceil_mode: windows at -1, 1, 3. The last covers rows 3..5;
    # row 4 is padding (counted), row 5 the overhang past the padding (not counted).
    out = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(out[0, 0, 0, 0], 4 / 9, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0, 2], 2 / 6, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 2, 2], 1 / 4, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1, 1], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                                  np.ones((1, 1, 3, 3), dtype=np.float32))


def test_padding_larger_than_half_kernel_is_rejected():
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        F.avg_pool2d(x, 2, padding=(0, 2))
    # PyTorch's CPU rule halves kernel_size itself, not the dilated extent.
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 3, padding=2, dilation=2)
    assert F.max_pool2d(x, 3, padding=1, dilation=2).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=0), "kernel_size"),
    (dict(kernel_size=2, stride=0), "stride"),
    (dict(kernel_size=2, padding=-1), "padding"),
    (dict(kernel_size=2, dilation=0), "dilation"),
    (dict(kernel_size=(9, 2)), "larger than the padded input height"),
    (dict(kernel_size=(1, 2), stride=1, dilation=3, padding=(0, 1)), "only padding"),
    (dict(kernel_size=(1, 2, 3)), "pair"),
])
def test_bad_parameters_raise_value_error(kwargs, match):
    # The dilated window over 4 columns with padding 1 has taps at -1 and 2 only for
    # width 2, hence the narrow input for that case.
    x = np.zeros((1, 1, 4, 2 if kwargs.get("dilation") == 3 else 4), dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        F.max_pool2d(x, **kwargs)


def test_bad_types_and_ndim():
    with pytest.raises(TypeError):
        F.max_pool2d(np.zeros((1, 1, 4, 4), dtype=bool), 2)
    with pytest.raises(TypeError):
        F.avg_pool2d(np.zeros((1, 1, 4, 4), dtype=np.float32), 2.0)
    with pytest.raises(TypeError):
        F.max_pool2d(np.zeros((1, 1, 4, 4), dtype=np.float32), 2, ceil_mode=1)
    with pytest.raises(ValueError, match="CHW or NCHW"):
        F.max_pool2d(np.zeros((4, 4), dtype=np.float32), 2)
    # float64 and integer input are converted to float32.
    x = np.arange(16).reshape(1, 1, 4, 4)
    assert F.max_pool2d(x, 2).dtype == np.float32
    np.testing.assert_array_equal(F.max_pool2d(x.astype(np.float64), 2), [[[[5, 7], [13, 15]]]])


def test_chw_input_is_unbatched():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 7)).astype(np.float32)
    out, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    full, full_idx = F.max_pool2d(x[None], 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(out, full[0])
    np.testing.assert_array_equal(idx, full_idx[0])
    g = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(F.max_pool2d_backward(g, x, idx, 3, 2, 1),
                                  F.max_pool2d_backward(g[None], x[None], full_idx, 3, 2, 1)[0])
    np.testing.assert_array_equal(F.avg_pool2d_backward(g, x, 3, 2, 1),
                                  F.avg_pool2d_backward(g[None], x[None], 3, 2, 1)[0])


def test_empty_batch_and_empty_planes():
    out, idx = F.max_pool2d(np.zeros((0, 3, 8, 8), np.float32), 2, return_indices=True)
    assert out.shape == idx.shape == (0, 3, 4, 4)
    assert F.max_pool2d_backward(out, np.zeros((0, 3, 8, 8)), idx, 2).shape == (0, 3, 8, 8)
    assert F.avg_pool2d(np.zeros((0, 3, 8, 8), np.float32), 3, 1, 1).shape == (0, 3, 8, 8)
    # H == 0: no window holds an input element, so the output has no rows.
    x = np.zeros((2, 3, 0, 8), np.float32)
    assert F.max_pool2d(x, 2, padding=1).shape == (2, 3, 0, 5)
    out = F.avg_pool2d(x, 2)
    assert out.shape == (2, 3, 0, 4)
    assert F.avg_pool2d_backward(out, x, 2).shape == (2, 3, 0, 8)


def test_views_match_contiguous_copies(isa):
    rng = np.random.default_rng(11)
    base = rng.standard_normal((2, 3, 12, 14)).astype(np.float32)
    views = [base[:, :, ::-1, :], base[..., ::2], base.transpose(0, 1, 3, 2), base[::-1, 1:]]
    for v in views:
        c = np.ascontiguousarray(v)
        np.testing.assert_array_equal(F.max_pool2d(v, 3, 2, 1), F.max_pool2d(c, 3, 2, 1))
        np.testing.assert_array_equal(F.avg_pool2d(v, 3, 2, 1), F.avg_pool2d(c, 3, 2, 1))
        out, idx = F.max_pool2d(c, 2, return_indices=True)
        g = rng.standard_normal(out.shape).astype(np.float32)
        g_view = np.repeat(g, 2, axis=-1)[..., ::2]
        idx_view = np.repeat(idx, 2, axis=-1)[..., ::2]
        np.testing.assert_array_equal(F.max_pool2d_backward(g_view, v, idx_view, 2),
                                      F.max_pool2d_backward(g, c, idx, 2))
        np.testing.assert_array_equal(F.avg_pool2d_backward(g_view, v, 2),
                                      F.avg_pool2d_backward(g, c, 2))


def test_max_backward_validates_indices():
    x = np.zeros((1, 2, 4, 4), np.float32)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="int64"):
        F.max_pool2d_backward(out, x, idx.astype(np.int32), 2)
    with pytest.raises(ValueError, match="indices must have shape"):
        _C.max_pool2d_backward(out, idx[:, :1], (1, 2, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        F.max_pool2d_backward(out[:, :, :1], x, idx, 2)
    for bad in (-1, 16, 2**40):
        wrong = idx.copy()
        wrong[0, 1, 1, 0] = bad
        with pytest.raises(IndexError, match="outside"):
            F.max_pool2d_backward(out, x, wrong, 2)
        with pytest.raises(IndexError, match="outside"):
            _C.max_pool2d_backward(out, wrong, (1, 2, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1), False,
                                   True)


def test_avg_backward_rejects_wrong_grad_shape():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        F.avg_pool2d_backward(np.zeros((1, 2, 3, 2), np.float32), x, 2)


@given(cfg=pool_configs(dilation=False), count_include_pad=st.booleans(), seed=st.integers(0, 2**31))
def test_oracle_avg_backward_matches_finite_differences(cfg, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    shape = (1, 1) + cfg["shape"][2:]
    x = rng.standard_normal(shape)
    args = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                ceil_mode=cfg["ceil_mode"], count_include_pad=count_include_pad)
    g = rng.standard_normal(R.avg_pool2d(x, **args).shape)
    grad = R.avg_pool2d_backward(g, shape, **args)
    h = 1e-6
    numeric = np.empty(shape)
    for i in np.ndindex(shape):
        step = np.zeros(shape)
        step[i] = h
        numeric[i] = (np.sum(g * R.avg_pool2d(x + step, **args))
                      - np.sum(g * R.avg_pool2d(x - step, **args))) / (2 * h)
    np.testing.assert_allclose(grad, numeric, atol=1e-7)


@given(cfg=pool_configs(), seed=st.integers(0, 2**31))
def test_matches_torch(cfg, seed):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    args = {k: cfg[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    try:
        out, idx = F.max_pool2d(x, return_indices=True, **args)
    except ValueError as e:
        assume("only padding" not in str(e))
        raise
    t_out, t_idx = tf.max_pool2d(torch.from_numpy(x), return_indices=True, **args)
    np.testing.assert_array_equal(out, t_out.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())
    if args["dilation"] == (1, 1):
        for cip in (True, False):
            avg_args = dict(kernel_size=args["kernel_size"], stride=args["stride"],
                            padding=args["padding"], ceil_mode=args["ceil_mode"],
                            count_include_pad=cip)
            np.testing.assert_allclose(F.avg_pool2d(x, **avg_args),
                                       tf.avg_pool2d(torch.from_numpy(x), **avg_args).numpy(),
                                       rtol=1e-5, atol=1e-6)


@st.composite
def vector_configs(draw):
    """Geometries of the vector fast paths (kernel == stride, 3x3/2, stride 1) with output
    rows around the vector widths 8 and 16, and few planes so rows are split over threads."""
    (kh, kw), (sh, sw) = draw(st.sampled_from([((2, 2), (2, 2)), ((3, 3), (3, 3)), ((3, 3), (2, 2)),
                                               ((2, 3), (2, 3)), ((3, 3), (1, 1)), ((1, 2), (1, 2))]))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    out_w = draw(st.sampled_from([1, 7, 8, 9, 15, 16, 17, 31, 33]))
    w = max(kw - 2 * pw, (out_w - 1) * sw + kw - 2 * pw + draw(st.integers(0, sw)))
    h = draw(st.integers(max(1, kh - 2 * ph), kh - 2 * ph + 7))
    return dict(shape=(1, draw(st.integers(1, 3)), h, w), kernel_size=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(1, 1), ceil_mode=draw(st.booleans()))


@given(cfg=vector_configs(), count_include_pad=st.booleans(), seed=st.integers(0, 2**31))
def test_vector_paths_match_reference_kernels(isa, threads, cfg, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    out, idx = _max_pool(x, cfg)
    ref_out, ref_idx = _max_pool(x, cfg, reference=True)
    # Both visit each window's taps in row-major order: identical values and indices.
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    args = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                ceil_mode=cfg["ceil_mode"], count_include_pad=count_include_pad)
    avg = F.avg_pool2d(x, **args)
    ref = _C.avg_pool2d(x, cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["ceil_mode"],
                        count_include_pad, True)
    np.testing.assert_array_equal(avg, ref)
    g = rng.standard_normal(avg.shape).astype(np.float32)
    _assert_avg_backward_matches_oracle(g, x, cfg, args)


@st.composite
def pair_window_configs(draw):
    """2x2 windows, horizontal stride 2 (the fast path without indices), any vertical stride and
    padding, output rows around the vector widths, values that tell taps apart only by their bits:
    NaNs with distinct payloads, -0 and +0 ties, -inf."""
    sh, ph, pw = draw(st.integers(1, 3)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
    out_w = draw(st.sampled_from([1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33]))
    w = max(2 - 2 * pw, 2 * out_w - 2 * pw + draw(st.integers(0, 1)))
    h = draw(st.integers(max(1, 2 - 2 * ph), 9))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    values = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -np.inf], np.float32)
    nan_payloads = np.arange(0x7FC00001, 0x7FC00009, dtype=np.uint32).view(np.float32)
    pool = np.concatenate([values, nan_payloads])
    # Thousands of values: drawn from a seed rather than as a hypothesis list of that length.
    x = pool[np.random.default_rng(draw(st.integers(0, 2**31))).integers(0, len(pool), shape)]
    return x, dict(kernel_size=(2, 2), stride=(sh, 2), padding=(ph, pw), dilation=(1, 1),
                   ceil_mode=draw(st.booleans()))


@given(case=pair_window_configs())
def test_max_pool_without_indices_has_the_references_bits(isa, threads, case):
    """Without indices, 2x2 windows of stride 2 combine each row's pairs, then the rows: the first
    maximum and the last NaN of the row-major taps, the bits of the reference, as with indices."""
    x, cfg = case
    try:
        ref_out, _ = _max_pool(x, cfg, reference=True)
    except ValueError as e:
        assume("only padding" not in str(e))
        raise
    out = F.max_pool2d(x, **cfg)
    with_indices, _ = F.max_pool2d(x, return_indices=True, **cfg)
    np.testing.assert_array_equal(out.view(np.uint32), ref_out.view(np.uint32))
    np.testing.assert_array_equal(with_indices.view(np.uint32), ref_out.view(np.uint32))


def test_max_pool_nan_and_minus_inf_in_vector_rows(isa):
    x = np.full((1, 1, 4, 40), -np.inf, np.float32)
    x[0, 0, 1, 5] = np.nan
    x[0, 0, 0, 6] = 3.0
    x[0, 0, 2, 33] = 1.0
    out, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    ref_out, ref_idx = _max_pool(x, dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                                         dilation=(1, 1), ceil_mode=False), reference=True)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    assert np.isnan(out[0, 0, 0, 2]) and out[0, 0, 0, 3] == 3.0 and out[0, 0, 1, 16] == 1.0


def test_avg_backward_is_the_same_for_any_thread_count(isa):
    # One plane: the input rows are split over threads.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 257, 301)).astype(np.float32)
    g = rng.standard_normal(F.avg_pool2d(x, 3, 2, 1).shape).astype(np.float32)
    results = []
    for n in (1, 2):
        previous = cnnkit.get_num_threads()
        cnnkit.set_num_threads(n)
        try:
            results.append(F.avg_pool2d_backward(g, x, 3, 2, 1))
        finally:
            cnnkit.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])


def test_implementation_follows_isa_cap(isa):
    expected = {"scalar": "direct_scalar", "avx2": "vector_avx2", "avx512": "vector_avx512"}[isa]
    assert _C.pool2d_implementation() == expected
