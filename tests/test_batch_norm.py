"""batch_norm forward and backward against the float64 oracle and PyTorch.

Tolerance magnitudes: normalisation is not a sum of products, so "the same op on |inputs|"
is replaced by the size of what each output is built from: |x_hat| |w| + |w| + |b| for the
forward (the statistics' error is relative to one standard deviation, i.e. |w| in the output),
the analogous sums of absolute terms for the backward; K is N * spatial (docs/RELIABILITY.md).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import cnnkit.functional as F
import cnnkit.reference as R
from cnnkit import _C, nn
from devices import CPU
from tolerance import assert_close


@st.composite
def bn_cases(draw):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 4))
    # Row lengths around the vector widths (8, 16) reach the masked tails.
    spatial = draw(st.sampled_from([(), (1,), (5,), (3, 4), (2, 7), (15,), (17,), (4, 8), (33,)]))
    if n * int(np.prod(spatial, dtype=int)) == 1:
        n = 2
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    mean = draw(st.sampled_from([0.0, 3.0, 1e4]))
    x = (rng.standard_normal((n, c) + spatial) * draw(st.sampled_from([1e-2, 1.0, 10.0])) + mean)
    affine = draw(st.booleans())
    w = rng.standard_normal(c).astype(np.float32) if affine else None
    b = rng.standard_normal(c).astype(np.float32) if affine else None
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (rng.random(c) + 0.5).astype(np.float32)
    return x.astype(np.float32), w, b, rm, rv, rng


def _magnitudes(x, w, b, mean, var, eps):
    c = x.shape[1]
    w = np.ones(c) if w is None else np.abs(np.asarray(w, np.float64))
    b = np.zeros(c) if b is None else np.abs(np.asarray(b, np.float64))
    shape = (1, c) + (1,) * (x.ndim - 2)
    xhat = np.abs(x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return xhat * w.reshape(shape) + (w + b).reshape(shape), xhat, w.reshape(shape)


def _channel_rows(x):
    """x as float64 rows of one channel each: (C, N * spatial)."""
    return np.moveaxis(x.astype(np.float64), 1, 0).reshape(x.shape[1], -1)


def _per_channel(x):
    return int(x.size // x.shape[1]) if x.shape[1] else 0


def _check_forward(x, w, b, rm, rv, training, reference=False, device=CPU):
    eps, momentum = 1e-5, 0.1
    rm_run, rv_run = rm.copy(), rv.copy()
    if reference:
        out = _C.batch_norm(x, rm_run, rv_run, w, b, training, momentum, eps, True)
    else:
        out = device.call(F.batch_norm, x, rm_run, rv_run, w, b, training, momentum, eps)
    expected, new_mean, new_var = R.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    rows = _channel_rows(x)
    mean, var = (rows.mean(1), rows.var(1)) if training else (rm.astype(np.float64), rv.astype(np.float64))
    magnitude, _, _ = _magnitudes(x, w, b, mean, var, eps)
    K = _per_channel(x)
    assert_close(out, expected, magnitude, K, "batch_norm")
    assert_close(rm_run, new_mean, np.abs(rm) + np.abs(mean), K, "batch_norm running_mean")
    assert_close(rv_run, new_var, np.abs(rv) + var * K / max(K - 1, 1), K, "batch_norm running_var")


def _check_backward(x, w, rm, rv, training, rng, reference=False, device=CPU):
    eps = 1e-5
    dy = rng.standard_normal(x.shape).astype(np.float32)
    if reference:
        got = _C.batch_norm_backward(dy, x, None if training else rm, None if training else rv, w,
                                     training, eps, True)
    else:
        got = device.call(F.batch_norm_backward, dy, x, rm, rv, w, training, eps)
    expected = R.batch_norm_backward(dy, x, rm, rv, w, training, eps)
    dx_mag, dw_mag, db_mag, K = _backward_magnitudes(dy, x, rm, rv, w, training, eps)
    assert_close(got[0], expected[0], dx_mag, K, "batch_norm_backward dx")
    if w is None:
        assert got[1] is None and got[2] is None
    else:
        assert_close(got[1], expected[1], dw_mag, K, "batch_norm_backward dw")
        assert_close(got[2], expected[2], db_mag, K, "batch_norm_backward db")


def _backward_magnitudes(dy, x, rm, rv, w, training, eps):
    """Tolerance magnitudes of dx, dw and db, and K."""
    rows = _channel_rows(x)
    mean, var = (rows.mean(1), rows.var(1)) if training else (rm.astype(np.float64), rv.astype(np.float64))
    _, xhat, wabs = _magnitudes(x, w, None, mean, var, eps)
    shape = wabs.shape
    invstd = (1 / np.sqrt(var + eps)).reshape(shape)
    K = _per_channel(x)
    ady = np.abs(np.asarray(dy, np.float64))
    axes = (0,) + tuple(range(2, x.ndim))
    sum_dy = ady.sum(axis=axes)
    sum_dy_xhat = (ady * xhat).sum(axis=axes)
    # dx = w invstd (dy - mean(dy) - xhat mean(dy xhat)), bounded term by term; the statistics
    # add an error of one standard deviation's worth (invstd |w| |dy|-sized).
    dx_mag = wabs * invstd * (ady + (sum_dy / K).reshape(shape) + (1 + xhat) * (sum_dy_xhat / K + sum_dy / K).reshape(shape))
    return dx_mag, sum_dy_xhat + sum_dy, sum_dy, K


@given(case=bn_cases(), training=st.booleans())
def test_forward_matches_oracle(isa, device, case, training):
    x, w, b, rm, rv, _ = case
    _check_forward(x, w, b, rm, rv, training, device=device)
    _check_forward(x, w, b, rm, rv, training, reference=True)


@given(case=bn_cases(), training=st.booleans())
def test_backward_matches_oracle(isa, device, case, training):
    x, w, _, rm, rv, rng = case
    _check_backward(x, w, rm, rv, training, rng, device=device)
    _check_backward(x, w, rm, rv, training, rng, reference=True)


@pytest.mark.parametrize("shape", [(8, 16), (4, 6, 100), (3, 5, 17, 19)])
def test_larger_cases_threaded(isa, threads, shape):
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    for training in (True, False):
        _check_forward(x, w, b, rm, rv, training)
        _check_backward(x, w, rm, rv, training, rng)


def test_running_stats_are_updated_in_place():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32) + 5
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm_before, rv_before = rm.__array_interface__["data"][0], rv.__array_interface__["data"][0]
    F.batch_norm(x, rm, rv, training=True, momentum=0.25)
    assert rm.__array_interface__["data"][0] == rm_before and rv.__array_interface__["data"][0] == rv_before
    rows = _channel_rows(x)
    np.testing.assert_allclose(rm, 0.25 * rows.mean(1), rtol=1e-6)
    np.testing.assert_allclose(rv, 0.75 + 0.25 * rows.var(1, ddof=1), rtol=1e-6)
    # Eval mode leaves them alone.
    snapshot = rm.copy(), rv.copy()
    F.batch_norm(x, rm, rv, training=False)
    np.testing.assert_array_equal(rm, snapshot[0])
    np.testing.assert_array_equal(rv, snapshot[1])


@pytest.mark.parametrize("make, error", [
    (lambda a: a.astype(np.float64), TypeError),
    (lambda a: a.tolist(), TypeError),
    (lambda a: np.repeat(a, 2)[::2], ValueError),
    (lambda a: a[:2], ValueError),
])
def test_bad_running_stats_are_rejected(make, error):
    x = np.ones((4, 3), np.float32)
    good = np.zeros(3, np.float32)
    with pytest.raises(error, match="running_mean"):
        F.batch_norm(x, make(np.zeros(3, np.float32)), np.ones(3, np.float32), training=True)
    readonly = np.ones(3, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        F.batch_norm(x, good, readonly, training=True)
    with pytest.raises(TypeError, match="float32"):
        _C.batch_norm(x, good, np.ones(3), None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="both"):
        F.batch_norm(x, good, None, training=True)


def test_single_value_per_channel():
    x = np.ones((1, 3, 1, 1), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x, rm, rv, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(np.ones((1, 3), np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm_backward(x, x, None, None)
    np.testing.assert_allclose(F.batch_norm(x, rm, rv), np.full(x.shape, 1 / np.sqrt(1 + 1e-5)),
                               rtol=1e-6)
    assert F.batch_norm_backward(x, x, rm, rv, training=False)[0].shape == x.shape


@pytest.mark.parametrize("level", [0.0, 3.5, 1e4, 5e4, 1e7])
def test_constant_input_gives_bias(level):
    x = np.full((5, 3, 4, 4), level, np.float32)
    b = np.array([0.5, -2.0, 7.25], np.float32)
    w = np.array([3.0, 1.0, -2.0], np.float32)
    out = F.batch_norm(x, None, None, w, b, training=True)
    np.testing.assert_array_equal(out, np.broadcast_to(b[None, :, None, None], x.shape))
    dx, dw, db = F.batch_norm_backward(np.ones_like(x), x, None, None, w)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw)) and np.all(np.isfinite(db))


@pytest.mark.parametrize("mean", [1e4, 1e7])
def test_large_mean_input_is_accurate(isa, mean):
    rng = np.random.default_rng(5)
    x = (mean + rng.integers(-4, 5, size=(16, 4, 8, 8))).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    _check_forward(x, None, None, rm, rv, True)
    _check_backward(x, None, rm, rv, True, rng)
    out = F.batch_norm(x, None, None, training=True)
    # Normalised: mean 0, variance 1 per channel, even though the data sit at 1e7.
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-4)


def test_eval_requires_running_stats_and_training_may_omit_them():
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="required"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="required"):
        F.batch_norm_backward(x, x, None, None, training=False)
    expected, _, _ = R.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(F.batch_norm(x, None, None, training=True), expected, atol=1e-6)


def test_empty_batch():
    x = np.zeros((0, 3, 4, 4), np.float32)
    rm, rv = np.full(3, 2.0, np.float32), np.full(3, 3.0, np.float32)
    assert F.batch_norm(x, rm, rv, training=True).shape == x.shape
    np.testing.assert_array_equal(rm, 2.0)
    np.testing.assert_array_equal(rv, 3.0)
    dx, dw, db = F.batch_norm_backward(x, x, None, None, np.ones(3, np.float32))
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    assert F.batch_norm(x, rm, rv).shape == x.shape


def test_shape_and_type_errors():
    x = np.ones((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match="weight"):
        F.batch_norm(x, None, None, np.ones(2), training=True)
    with pytest.raises(ValueError, match="input"):
        F.batch_norm(np.ones(3, np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="grad_output"):
        F.batch_norm_backward(np.ones((4, 3), np.float32), x, None, None)
    with pytest.raises(TypeError):
        F.batch_norm(x.astype(bool), None, None, training=True)
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(x, None, None, training=True, eps=-1.0)
    with pytest.raises(TypeError):
        F.batch_norm(x, None, None, training=1)


def test_views_match_contiguous_copies():
    rng = np.random.default_rng(9)
    base = rng.standard_normal((4, 6, 5, 7)).astype(np.float32)
    w = rng.standard_normal(6)[::-1]
    for v in (base[::-1], base[:, ::2], base.transpose(0, 1, 3, 2), base[..., ::-2]):
        c = np.ascontiguousarray(v)
        ch = v.shape[1]
        wv = w[:ch]
        np.testing.assert_array_equal(F.batch_norm(v, None, None, wv, wv, training=True),
                                      F.batch_norm(c, None, None, np.ascontiguousarray(wv), wv,
                                                   training=True))
        for a, b in zip(F.batch_norm_backward(v, v, None, None, wv),
                        F.batch_norm_backward(c, c, None, None, np.ascontiguousarray(wv))):
            np.testing.assert_array_equal(a, b)


@given(case=bn_cases(), training=st.booleans())
def test_oracle_backward_matches_finite_differences(case, training):
    x, w, b, rm, rv, rng = case
    x = x.astype(np.float64)
    x = x[:2, :2, ...] if x.shape[0] * np.prod(x.shape[2:], dtype=int) > 2 else x
    if training and x.size // x.shape[1] == 1:
        return
    x = (x - x.mean()) / (x.std() + 1)  # keep the numerical steps well scaled
    c = x.shape[1]
    w = rng.standard_normal(c)
    b = rng.standard_normal(c)
    rm, rv = rm[:c].astype(np.float64), rv[:c].astype(np.float64)
    dy = rng.standard_normal(x.shape)

    def loss(xx, ww, bb):
        return np.sum(dy * R.batch_norm(xx, rm, rv, ww, bb, training, 0.1, 1e-5)[0])

    dx, dw, db = R.batch_norm_backward(dy, x, rm, rv, w, training, 1e-5)
    h = 1e-6

    def numeric(arr, f):
        grad = np.empty_like(arr)
        for i in np.ndindex(arr.shape):
            step = np.zeros_like(arr)
            step[i] = h
            grad[i] = (f(arr + step) - f(arr - step)) / (2 * h)
        return grad

    np.testing.assert_allclose(dx, numeric(x, lambda a: loss(a, w, b)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dw, numeric(w, lambda a: loss(x, a, b)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(db, numeric(b, lambda a: loss(x, w, a)), rtol=1e-4, atol=1e-6)


@given(case=bn_cases(), training=st.booleans())
def test_matches_torch(case, training):
    torch = pytest.importorskip("torch")
    x, w, b, rm, rv, rng = case
    rm_ours, rv_ours = rm.copy(), rv.copy()
    out = F.batch_norm(x, rm_ours, rv_ours, w, b, training)
    rm_t, rv_t = torch.from_numpy(rm.astype(np.float64)), torch.from_numpy(rv.astype(np.float64))
    xt = torch.from_numpy(x).double().requires_grad_()
    wt = None if w is None else torch.from_numpy(w).double().requires_grad_()
    bt = None if b is None else torch.from_numpy(b).double()
    t_out = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training)
    scale = np.abs(t_out.detach().numpy()).max() + 1
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-4 * scale)
    # torch updated rm_t and rv_t in place (in float64): the running statistics must agree too.
    rows = _channel_rows(x)
    K = _per_channel(x)
    mean, var = (np.abs(rows.mean(1)), rows.var(1) * K / max(K - 1, 1)) if training else (0.0, 0.0)
    assert_close(rm_ours, rm_t.numpy(), np.abs(rm) + mean, K, "batch_norm running_mean vs torch")
    assert_close(rv_ours, rv_t.numpy(), np.abs(rv) + var, K, "batch_norm running_var vs torch")
    dy = rng.standard_normal(x.shape)
    t_out.backward(torch.from_numpy(dy))
    dx, dw, _ = F.batch_norm_backward(dy, x, rm, rv, w, training)
    g_scale = np.abs(xt.grad.numpy()).max() + 1
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-3 * g_scale)
    if w is not None:
        np.testing.assert_allclose(dw, wt.grad.numpy(), atol=1e-3 * (np.abs(wt.grad.numpy()).max() + 1))


def _module_pair(torch, channels, **kwargs):
    """A cnnkit BatchNorm2d and a float64 torch one with the same random affine parameters."""
    ours = nn.BatchNorm2d(channels, **kwargs)
    theirs = torch.nn.BatchNorm2d(channels, **kwargs).double()
    rng = np.random.default_rng(channels)
    ours.weight.data[...] = rng.standard_normal(channels)
    ours.bias.data[...] = rng.standard_normal(channels)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data.astype(np.float64)))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data.astype(np.float64)))
    return ours, theirs


def _check_module_output(ours, theirs, torch, x, training):
    out = ours(x)
    t_out = theirs(torch.from_numpy(x.astype(np.float64)))
    rows = _channel_rows(x)
    if training:
        mean, var = rows.mean(1), rows.var(1)
    else:
        mean, var = theirs.running_mean.numpy(), theirs.running_var.numpy()
    magnitude, _, _ = _magnitudes(x, ours.weight.data, ours.bias.data, mean, var, ours.eps)
    assert_close(out, t_out.detach().numpy(), magnitude, _per_channel(x), "BatchNorm2d vs torch")


@pytest.mark.parametrize("momentum", [None, 0.3], ids=["cumulative", "exponential"])
def test_module_running_statistics_follow_torch(momentum):
    """momentum=None keeps the cumulative average of the batch statistics (PyTorch's rule)."""
    torch = pytest.importorskip("torch")
    ours, theirs = _module_pair(torch, 3, momentum=momentum)
    rng = np.random.default_rng(1)
    mean_mag = np.abs(ours.running_mean).astype(np.float64)
    var_mag = np.abs(ours.running_var).astype(np.float64)
    for scale, shift in [(1.0, 0.0), (3.0, 5.0), (0.5, -2.0), (2.0, 1.0), (1.0, 8.0)]:
        x = (rng.standard_normal((4, 3, 5, 5)) * scale + shift).astype(np.float32)
        _check_module_output(ours, theirs, torch, x, training=True)
        rows = _channel_rows(x)
        # Errors of earlier updates carry over, so the magnitudes add up over the steps.
        mean_mag += np.abs(rows.mean(1)) + np.abs(theirs.running_mean.numpy())
        var_mag += rows.var(1, ddof=1) + theirs.running_var.numpy()
        K = rows.shape[1]
        assert_close(ours.running_mean, theirs.running_mean.numpy(), mean_mag, K, "BatchNorm2d running_mean")
        assert_close(ours.running_var, theirs.running_var.numpy(), var_mag, K, "BatchNorm2d running_var")
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 5
    ours.eval()
    theirs.eval()
    _check_module_output(ours, theirs, torch, rng.standard_normal((2, 3, 4, 4)).astype(np.float32), training=False)


def test_module_without_running_statistics_follows_torch():
    """track_running_stats=False: no buffers, and batch statistics in eval mode as in training."""
    torch = pytest.importorskip("torch")
    ours, theirs = _module_pair(torch, 4, track_running_stats=False)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    rng = np.random.default_rng(2)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        ours.zero_grad()
        theirs.zero_grad()
        x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 3).astype(np.float32)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        t_out = theirs(xt)
        out = ours(x)
        rows = _channel_rows(x)
        magnitude, _, _ = _magnitudes(x, ours.weight.data, ours.bias.data, rows.mean(1), rows.var(1), ours.eps)
        assert_close(out, t_out.detach().numpy(), magnitude, _per_channel(x), "BatchNorm2d untracked vs torch")
        dy = rng.standard_normal(x.shape)
        t_out.backward(torch.from_numpy(dy))
        dx = ours.backward(dy.astype(np.float32))
        dx_mag, dw_mag, db_mag, K = _backward_magnitudes(dy, x, None, None, ours.weight.data, True, ours.eps)
        assert_close(dx, xt.grad.numpy(), dx_mag, K, "BatchNorm2d untracked dx vs torch")
        assert_close(ours.weight.grad, theirs.weight.grad.numpy(), dw_mag, K, "BatchNorm2d untracked dw vs torch")
        assert_close(ours.bias.grad, theirs.bias.grad.numpy(), db_mag, K, "BatchNorm2d untracked db vs torch")
    assert ours.running_mean is None and ours.running_var is None and ours.num_batches_tracked is None


def test_implementation_follows_isa_cap(isa):
    expected = {"scalar": "channels", "avx2": "vector_avx2", "avx512": "vector_avx512"}[isa]
    assert _C.batch_norm_implementation() == expected


def test_row_chunks_give_the_same_result_for_any_thread_count(isa):
    # Few channels of many rows: the statistics are split over row chunks, whose partial
    # sums are combined in a fixed order after the parallel region.
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((64, 2, 40, 41)) * 2 + 5).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w, b = np.array([1.5, -0.5], np.float32), np.array([0.25, 2.0], np.float32)
    results = []
    for n in (1, 2):
        previous = cnnkit.get_num_threads()
        cnnkit.set_num_threads(n)
        try:
            rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
            y = F.batch_norm(x, rm, rv, w, b, training=True)
            results.append((y, rm, rv) + tuple(F.batch_norm_backward(dy, x, None, None, w)))
        finally:
            cnnkit.set_num_threads(previous)
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)
    _check_forward(x, w, b, np.zeros(2, np.float32), np.ones(2, np.float32), True)
    _check_backward(x, w, np.zeros(2, np.float32), np.ones(2, np.float32), True, rng)


def _relu_of(y):
    """relu's formula on an array: 0 where y < 0, y elsewhere (NaN and -0 kept)."""
    return np.where(y < 0, np.float32(0), y)


@given(case=bn_cases(), training=st.booleans())
def test_fused_relu_is_batch_norm_then_relu_bit_for_bit(isa, threads, case, training):
    """batch_norm_relu writes exactly relu(batch_norm(...)) and updates the running statistics
    alike; its backward, given that output, exactly batch_norm_backward of relu_backward's
    gradient: in the production kernels under each ISA cap and in the reference."""
    x, w, b, rm, rv, rng = case
    eps, momentum = 1e-5, 0.1
    dy = rng.standard_normal(x.shape).astype(np.float32)
    stats = (None, None) if training else (rm, rv)
    for reference in (False, True):
        fused_m, fused_v, plain_m, plain_v = rm.copy(), rv.copy(), rm.copy(), rv.copy()
        fused = _C.batch_norm(x, fused_m, fused_v, w, b, training, momentum, eps, reference, relu=True)
        plain = _C.batch_norm(x, plain_m, plain_v, w, b, training, momentum, eps, reference)
        np.testing.assert_array_equal(fused, _relu_of(plain))
        np.testing.assert_array_equal(fused_m, plain_m)
        np.testing.assert_array_equal(fused_v, plain_v)
        got = _C.batch_norm_backward(dy, x, *stats, w, training, eps, reference, relu_output=fused)
        want = _C.batch_norm_backward(np.where(fused <= 0, np.float32(0), dy), x, *stats, w, training, eps,
                                      reference)
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e)


@given(case=bn_cases(), training=st.booleans())
def test_fused_relu_matches_oracle(isa, case, training):
    """The fused forward against relu of the float64 batch norm, and its backward against the
    oracle's backward of the gradient masked where the fused output is <= 0."""
    x, w, b, rm, rv, rng = case
    eps, momentum = 1e-5, 0.1
    out = F.batch_norm_relu(x, rm.copy(), rv.copy(), w, b, training, momentum, eps)
    expected, _, _ = R.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    rows = _channel_rows(x)
    mean, var = (rows.mean(1), rows.var(1)) if training else (rm.astype(np.float64), rv.astype(np.float64))
    magnitude, _, _ = _magnitudes(x, w, b, mean, var, eps)
    K = _per_channel(x)
    assert_close(out, np.maximum(expected, 0.0), magnitude, K, "batch_norm_relu")
    dy = np.where(out > 0, rng.standard_normal(x.shape), 0.0).astype(np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    # The gradient where the output is 0 must not matter: pass noise there.
    got = F.batch_norm_relu_backward(np.where(out > 0, dy, noise), x, out, rm, rv, w, training, eps)
    expected = R.batch_norm_backward(dy, x, rm, rv, w, training, eps)
    dx_mag, dw_mag, db_mag, K = _backward_magnitudes(dy, x, rm, rv, w, training, eps)
    assert_close(got[0], expected[0], dx_mag, K, "batch_norm_relu_backward dx")
    if w is not None:
        assert_close(got[1], expected[1], dw_mag, K, "batch_norm_relu_backward dw")
        assert_close(got[2], expected[2], db_mag, K, "batch_norm_relu_backward db")


def test_fused_relu_backward_checks_the_output():
    x = np.ones((2, 3, 4), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="output must have the input's shape"):
        F.batch_norm_relu_backward(x, x, x[:, :2], rm, rv)
    with pytest.raises(ValueError, match="relu_output must have the input's shape"):
        _C.batch_norm_backward(x, x, None, None, None, True, 1e-5, relu_output=x[:1])
