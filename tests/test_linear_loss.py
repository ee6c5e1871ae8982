"""Linear, softmax / log_softmax and cross-entropy against the float64 oracle."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import cnnkit.functional as F
from cnnkit import _C
from cnnkit import reference as R
from devices import CPU
from tolerance import assert_close, assert_exact

# Probabilities below float32's range come out as 0 or subnormal; with this
# floor added to A they are judged in absolute terms.
SUBNORMAL_FLOOR = 2.0**-126

# Sizes around the vector widths (4, 8, 16 floats), the GEMM tiles and a few primes.
SIZES = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33]

# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------


def _check_linear(x, w, b, g, device=CPU):
    y = device.call(F.linear, x, w, b)
    dx, dw, db = device.call(F.linear_backward, g, x, w)
    ax, aw = np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64))
    ab = None if b is None else np.abs(b.astype(np.float64))
    ag = np.abs(g.astype(np.float64))
    rows = max(int(np.prod(x.shape[:-1])), 1)
    ref_dx, ref_dw, ref_db = R.linear_backward(g, x, w)
    a_dx, a_dw, a_db = R.linear_backward(ag, ax, aw)
    assert y.shape == x.shape[:-1] + (w.shape[0],) and y.dtype == np.float32
    assert_close(y, R.linear(x, w, b), R.linear(ax, aw, ab), w.shape[1], "linear")
    assert_close(dx, ref_dx, a_dx, w.shape[0], "linear_backward.input")
    assert_close(dw, ref_dw, a_dw, rows, "linear_backward.weight")
    assert_close(db, ref_db, a_db, rows, "linear_backward.bias")


@given(
    batch=st.lists(st.sampled_from(SIZES), min_size=0, max_size=2),
    in_features=st.sampled_from(SIZES + [64, 129]),
    out_features=st.sampled_from(SIZES + [64, 129]),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_linear_matches_oracle(isa, device, batch, in_features, out_features, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(batch) + (in_features,)).astype(np.float32)
    w = rng.standard_normal((out_features, in_features)).astype(np.float32)
    b = rng.standard_normal(out_features).astype(np.float32) if with_bias else None
    g = rng.standard_normal(tuple(batch) + (out_features,)).astype(np.float32)
    _check_linear(x, w, b, g, device)


def test_linear_large_threaded(isa, threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 67, 300)).astype(np.float32)
    w = rng.standard_normal((129, 300)).astype(np.float32)
    b = rng.standard_normal(129).astype(np.float32)
    _check_linear(x, w, b, rng.standard_normal((3, 67, 129)).astype(np.float32))


def test_linear_integer_fill_is_exact(isa, threads):
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 9, size=(5, 37, 130))
    w = rng.integers(-8, 9, size=(65, 130))
    b = rng.integers(-8, 9, size=65)
    g = rng.integers(-8, 9, size=(5, 37, 65))
    assert_exact(F.linear(x, w, b), R.linear(x, w, b), "linear")
    for got, want, what in zip(F.linear_backward(g, x, w), R.linear_backward(g, x, w), ("input", "weight", "bias")):
        assert_exact(got, want, "linear_backward." + what)



# Batches 1..8 take the small-M SGEMM (forward: dot products over rows of W;
# input gradient: rows of W streamed); the weight gradient's depth is the batch.
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("in_features,out_features", [(400, 120), (84, 10), (1100, 300)])
def test_linear_small_batch_is_exact(isa, threads, batch, in_features, out_features):
    rng = np.random.default_rng(batch)
    x = rng.integers(-8, 9, size=(batch, in_features))
    w = rng.integers(-8, 9, size=(out_features, in_features))
    b = rng.integers(-8, 9, size=out_features)
    g = rng.integers(-8, 9, size=(batch, out_features))
    assert_exact(F.linear(x, w, b), R.linear(x, w, b), "linear")
    for got, want, what in zip(F.linear_backward(g, x, w), R.linear_backward(g, x, w), ("input", "weight", "bias")):
        assert_exact(got, want, "linear_backward." + what)

def test_linear_gradient_flags_skip_outputs():
    x, w, g = np.ones((2, 3)), np.ones((4, 3)), np.ones((2, 4))
    dx, dw, db = F.linear_backward(g, x, w, input_grad=False, bias_grad=False)
    assert dx is None and db is None and dw.shape == (4, 3)
    dx, dw, db = F.linear_backward(g, x, w, weight_grad=False)
    assert dw is None and dx.shape == (2, 3) and db.shape == (4,)


def test_linear_one_dimensional_input():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(7), rng.standard_normal((5, 7)), rng.standard_normal(5)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    assert F.linear(x, w, b).shape == (5,)
    _check_linear(x, w, b, rng.standard_normal(5).astype(np.float32))


def test_linear_empty_batch_and_zero_features():
    w, b = np.ones((4, 3), np.float32), np.arange(4, dtype=np.float32)
    assert F.linear(np.zeros((0, 3)), w, b).shape == (0, 4)
    dx, dw, db = F.linear_backward(np.zeros((0, 4)), np.zeros((0, 3)), w)
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dw, np.zeros((4, 3)))
    np.testing.assert_array_equal(db, np.zeros(4))
    # No input features: the output is the bias.
    np.testing.assert_array_equal(F.linear(np.zeros((2, 0)), np.zeros((4, 0)), b), np.tile(b, (2, 1)))


def test_linear_views_equal_contiguous_copy():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((12, 40)).astype(np.float32)
    w = rng.standard_normal((9, 20)).astype(np.float32)
    x = base[::-2, ::2]
    np.testing.assert_array_equal(F.linear(x, w.T.copy().T), F.linear(np.ascontiguousarray(x), w))
    g = rng.standard_normal((6, 9)).astype(np.float32)
    g_strided = np.zeros((6, 18), np.float32)
    g_strided[:, ::2] = g
    for got, want in zip(F.linear_backward(g_strided[:, ::2], x, w), F.linear_backward(g, x.copy(), w)):
        np.testing.assert_array_equal(got, want)


def test_linear_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 17)).astype(np.float32)
    w = rng.standard_normal((9, 17)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    g = rng.standard_normal((2, 3, 9)).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(F.linear(x, w, b), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    for got, want in zip(F.linear_backward(g, x, w), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_linear_bad_inputs_raise():
    x, w = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"weight\.shape\[1\]"):
        F.linear(np.zeros((2, 5)), w)
    with pytest.raises(ValueError, match="bias"):
        F.linear(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="bias"):
        F.linear(x, w, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="weight"):
        F.linear(x, np.zeros(3))
    with pytest.raises(ValueError, match="input"):
        F.linear(np.float32(1.0), w)
    with pytest.raises(ValueError, match="grad_output"):
        F.linear_backward(np.zeros((2, 5)), x, w)
    with pytest.raises(TypeError, match="weight"):
        F.linear(x, np.zeros((4, 3), bool))


# ---------------------------------------------------------------------------
# softmax and log_softmax
# ---------------------------------------------------------------------------


def _softmax_magnitudes(log, y_ref, g):
    """A for the forward and the backward along `dim` (both given the oracle's output).

    log_softmax's +1 covers the absolute error of log(sum), which is ~u
    whatever the size of y (y ~ 0 for the largest logit).
    """
    if log:
        return np.abs(y_ref) + 1.0, lambda dim: np.abs(g) + np.exp(y_ref) * np.abs(g).sum(axis=dim, keepdims=True)
    return y_ref + SUBNORMAL_FLOOR, lambda dim: y_ref * (
        np.abs(g) + (np.abs(g) * y_ref).sum(axis=dim, keepdims=True)
    ) + SUBNORMAL_FLOOR


def _check_softmax(x, g, dim, log, reference=False, device=CPU):
    name = "log_softmax" if log else "softmax"
    if reference:
        y = _C.softmax(x, dim, log, reference=True)
        dx = _C.softmax_backward(g, y, dim, log, reference=True)
    else:
        y = device.call(getattr(F, name), x, dim)
        dx = device.call(getattr(F, name + "_backward"), g, y, dim)
    y_ref = getattr(R, name)(x, dim)
    a_y, a_dx = _softmax_magnitudes(log, y_ref, g.astype(np.float64))
    K = x.shape[dim]
    assert_close(y, y_ref, a_y, K, name)
    # The backward is judged on the float32 output it was given.
    dx_ref = getattr(R, name + "_backward")(g, y, dim)
    assert_close(dx, dx_ref, _softmax_magnitudes(log, y.astype(np.float64), g.astype(np.float64))[1](dim), K, name + "_backward")
    return y, dx


@given(
    shape=st.lists(st.sampled_from(SIZES), min_size=1, max_size=4).filter(lambda s: np.prod(s) <= 20000),
    data=st.data(),
    scale=st.sampled_from([1.0, 10.0, 1000.0]),
    log=st.booleans(),
    reference=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_softmax_matches_oracle(isa, device, shape, data, scale, log, reference, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    _check_softmax(x, g, dim, log, reference and device.name == "cpu", device)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_large_threaded(isa, threads, dim, log):
    # dim=1 has 130 inner lines: two full column blocks and a partial one.
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((6, 301, 130)) * 5).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    _check_softmax(x, g, dim, log)
    _check_softmax(x, g, dim, log, reference=True)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_large_logits_and_special_values(isa, log):
    x = np.array(
        [
            [1e4, -1e4, 0.0, 9999.0],
            [-1e4, -1e4, -1e4, -1e4],
            [1e38, -1e38, 1e38, 0.0],
            [-np.inf, 0.0, 1.0, -np.inf],
            [np.nan, 0.0, 1.0, 2.0],
            [np.inf, 0.0, 1.0, 2.0],
            [-np.inf, -np.inf, -np.inf, -np.inf],
        ],
        np.float32,
    )
    g = np.ones_like(x)
    name = "log_softmax" if log else "softmax"
    with np.errstate(invalid="ignore"):
        y, dx = _check_softmax(x, g, -1, log)
    assert np.isfinite(y[:3]).all() and np.isfinite(dx[:3]).all()
    assert np.isnan(y[4:]).all(), f"{name}: a line holding NaN, +inf or only -inf is NaN (PyTorch)"
    assert (y[3, [0, 3]] == (-np.inf if log else 0.0)).all()


@pytest.mark.parametrize("C", [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 129])
def test_row_maximum_found_in_every_position(isa, C):
    """The vector kernels keep four running maxima (blocks of 4 vectors, then
    single vectors, then a partial one): a line whose largest entry sits at
    any position, far above the rest, and a NaN or +inf anywhere, come out
    as the oracle says."""
    rng = np.random.default_rng(C)
    x = (rng.standard_normal((C, C)) - 200.0).astype(np.float32)
    x[np.arange(C), np.arange(C)] = 50.0  # line i's maximum at position i
    g = rng.standard_normal(x.shape).astype(np.float32)
    for log in (False, True):
        y, _ = _check_softmax(x, g, -1, log)
        assert (y.argmax(axis=1) == np.arange(C)).all()
    target = np.arange(C)
    loss = F.cross_entropy(x, target, reduction="none")
    assert np.abs(loss).max() < 1e-6  # each line's target holds its maximum: loss ~ e^-250
    for special in (np.nan, np.inf):
        z = x.copy()
        z[np.arange(C), (np.arange(C) * 7) % C] = special
        with np.errstate(invalid="ignore"):
            y = F.softmax(z)
        assert np.isnan(y).all(), f"softmax: a line holding {special} is NaN"


@pytest.mark.parametrize("log", [False, True])
def test_softmax_agrees_with_torch(isa, log):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    name = "log_softmax" if log else "softmax"
    for dim in range(-3, 3):
        tx = torch.tensor(x, requires_grad=True)
        ty = getattr(torch, name)(tx, dim)
        ty.backward(torch.tensor(g))
        y = getattr(F, name)(x, dim)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(getattr(F, name + "_backward")(g, y, dim), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dim", [1, 0])
def test_softmax_dispatch_picks_the_widest_enabled_kernel(isa, dim):
    # The vector kernels take the class axis contiguous (the last dim); others use the scalar loops.
    want = {"scalar": "threaded", "avx2": "vector_avx2", "avx512": "vector_avx512"}[isa]
    assert _C.softmax_implementation(np.zeros((2, 3), np.float32), dim) == (want if dim == 1 else "threaded")


def test_softmax_empty_shapes():
    assert F.softmax(np.zeros((0, 5)), -1).shape == (0, 5)
    assert F.log_softmax(np.zeros((3, 0)), 1).shape == (3, 0)
    assert F.softmax_backward(np.zeros((2, 0, 4)), np.zeros((2, 0, 4)), 0).shape == (2, 0, 4)


def test_softmax_bad_arguments_raise():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="dim"):
        F.softmax(x, 2)
    with pytest.raises(ValueError, match="dim"):
        F.log_softmax(x, -3)
    with pytest.raises(TypeError, match="dim"):
        F.softmax(x, 1.0)
    with pytest.raises(TypeError, match="dim"):
        F.softmax(x, True)
    with pytest.raises(ValueError, match="grad_output"):
        F.softmax_backward(np.zeros((3, 2)), x, 0)
    with pytest.raises(TypeError, match="input"):
        F.softmax(np.array([[True]]))


# ---------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------


def _ce_magnitudes(x, t, reduction, ignore_index, grad_output):
    """A for the loss (terms max, log-sum and x[target]) and for d(logits)."""
    x = x.astype(np.float64)
    keep = t != ignore_index
    rows = np.zeros(len(t))
    grad = np.zeros_like(x)
    count = int(keep.sum())
    for n in np.flatnonzero(keep):
        m = x[n].max()
        s = np.exp(x[n] - m).sum()
        rows[n] = abs(m) + np.log(s) + abs(x[n, t[n]])
        scale = abs(float(np.asarray(grad_output).reshape(-1)[n if reduction == "none" else 0]))
        if reduction == "mean":
            scale /= count
        grad[n] = scale * np.exp(x[n] - m) / s + SUBNORMAL_FLOOR
        grad[n, t[n]] += scale
    if reduction == "none":
        return rows, grad
    total = rows.sum()
    return (total / count if count else 0.0) if reduction == "mean" else total, grad


def _targets(rng, n, c, ignore_index, ignored_fraction):
    t = rng.integers(0, c, size=n)
    t[rng.random(n) < ignored_fraction] = ignore_index
    return t


def _check_ce(x, t, reduction, ignore_index, grad_output, reference=False, device=CPU):
    if reference:
        loss = _C.cross_entropy(x, t, reduction, ignore_index, reference=True)
        grad = _C.cross_entropy_backward(x, t, np.asarray(grad_output, np.float32), reduction, ignore_index, reference=True)
    else:
        loss = device.call(F.cross_entropy, x, t, reduction=reduction, ignore_index=ignore_index)
        grad = device.call(F.cross_entropy_backward, x, t, grad_output, reduction=reduction,
                           ignore_index=ignore_index)
    a_loss, a_grad = _ce_magnitudes(x, t, reduction, ignore_index, grad_output)
    C = x.shape[1]
    assert_close(loss, R.cross_entropy(x, t, reduction, ignore_index), a_loss, C, "cross_entropy")
    assert_close(grad, R.cross_entropy_backward(x, t, grad_output, reduction, ignore_index), a_grad, C, "cross_entropy_backward")
    return loss, grad


@given(
    n=st.sampled_from([0, 1, 2, 3, 7, 8, 9, 17, 33]),
    c=st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17, 33, 100]),
    scale=st.sampled_from([1.0, 10.0, 1e4]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    ignore_index=st.sampled_from([-100, 0, 5]),
    ignored_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    reference=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_cross_entropy_matches_oracle(isa, device, n, c, scale, reduction, ignore_index, ignored_fraction, reference,
                                      seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    t = _targets(rng, n, c, ignore_index, ignored_fraction)
    g = rng.standard_normal(n).astype(np.float32) if reduction == "none" else float(rng.standard_normal())
    _check_ce(x, t, reduction, ignore_index, g, reference and device.name == "cpu", device)


def test_cross_entropy_large_threaded(isa, threads):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3001, 37)) * 3).astype(np.float32)
    t = _targets(rng, 3001, 37, -100, 0.1)
    for reduction in ("mean", "sum"):
        _check_ce(x, t, reduction, -100, 0.7)
    _check_ce(x, t, "none", -100, rng.standard_normal(3001).astype(np.float32))


def test_cross_entropy_does_not_depend_on_thread_count(isa):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((4001, 19)) * 3).astype(np.float32)
    t = _targets(rng, 4001, 19, -100, 0.1)
    previous = cnnkit.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            cnnkit.set_num_threads(n)
            results.append((F.cross_entropy(x, t), F.cross_entropy_backward(x, t, 1.5)))
    finally:
        cnnkit.set_num_threads(previous)
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])


def test_cross_entropy_large_logits_are_finite(isa):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e38, -1e38, 0.0], [3e38, 3e38, -3e38]], np.float32)
    t = np.array([1, 2, 1, 0])
    for reduction in ("mean", "sum", "none"):
        loss, grad = _check_ce(x, t, reduction, -100, np.ones(4, np.float32) if reduction == "none" else 1.0)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(F.cross_entropy(x[:1], t[:1]), 2e4, rtol=1e-7)
    np.testing.assert_array_equal(F.cross_entropy_backward(x[:1], t[:1]), [[1.0, -1.0, 0.0]])


def test_cross_entropy_empty_and_all_ignored(isa):
    x = np.zeros((0, 4), np.float32)
    t = np.zeros(0, np.int64)
    assert np.isnan(F.cross_entropy(x, t))
    assert F.cross_entropy(x, t, reduction="sum") == 0.0
    assert F.cross_entropy(x, t, reduction="none").shape == (0,)
    assert F.cross_entropy_backward(x, t).shape == (0, 4)
    x = np.ones((3, 4), np.float32)
    t = np.full(3, -100)
    assert np.isnan(F.cross_entropy(x, t))
    np.testing.assert_array_equal(F.cross_entropy_backward(x, t), np.zeros((3, 4)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_agrees_with_torch(isa, reduction, ignore_index):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((13, 5)) * 3).astype(np.float32)
    t = _targets(rng, 13, 5, ignore_index, 0.2)
    g = rng.standard_normal(13).astype(np.float32) if reduction == "none" else 0.8
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), reduction=reduction, ignore_index=ignore_index)
    tl.backward(torch.tensor(g))
    loss = F.cross_entropy(x, t, reduction=reduction, ignore_index=ignore_index)
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-5, atol=1e-6)
    grad = F.cross_entropy_backward(x, t, g, reduction=reduction, ignore_index=ignore_index)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_target_dtypes():
    x = np.zeros((2, 3), np.float32)
    for t in (np.array([0, 2], np.uint8), np.array([0, 2], np.int32), [0, 2]):
        assert F.cross_entropy(x, t) == pytest.approx(np.log(3), rel=1e-6)
    with pytest.raises(TypeError, match="target"):
        F.cross_entropy(x, np.array([0.0, 2.0]))
    with pytest.raises(TypeError, match="target"):
        F.cross_entropy_backward(x, np.array([True, False]))
    with pytest.raises(IndexError, match="18446744073709551615"):
        F.cross_entropy(x, np.array([0, 2**64 - 1], np.uint64))


@pytest.mark.parametrize("bad", [3, 7, -1, -101])
def test_cross_entropy_label_out_of_range_raises_index_error(bad):
    x = np.zeros((3, 3), np.float32)
    t = np.array([0, bad, 1])
    with pytest.raises(IndexError, match=rf"label {bad}\b"):
        F.cross_entropy(x, t)
    with pytest.raises(IndexError, match=rf"label {bad}\b"):
        F.cross_entropy_backward(x, t)
    with pytest.raises(IndexError, match=rf"label {bad}\b"):
        _C.cross_entropy(x, t, "mean", -100, reference=True)


def test_cross_entropy_bad_shapes_and_arguments_raise():
    x = np.zeros((3, 4), np.float32)
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(x, t[:2])
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(x, t.reshape(3, 1))
    with pytest.raises(ValueError, match="input"):
        F.cross_entropy(np.zeros(4), t[:1])
    with pytest.raises(ValueError, match="input"):
        F.cross_entropy(np.zeros((3, 4, 2)), t)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="grad_output"):
        F.cross_entropy_backward(x, t, np.ones(2), reduction="none")
    with pytest.raises(ValueError, match="grad_output"):
        F.cross_entropy_backward(x, t, np.ones(3), reduction="mean")
    with pytest.raises(TypeError, match="ignore_index"):
        F.cross_entropy(x, t, ignore_index=1.5)


# ---------------------------------------------------------------------------
# the oracle's derivatives against central differences
# ---------------------------------------------------------------------------

H = 1e-6


def _numeric_gradient(f, x):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = H
        grad[i] = (f(x + e) - f(x - e)) / (2 * H)
    return grad


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True])
def test_oracle_softmax_backward_matches_finite_differences(dim, log):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 2)) * 2
    g = rng.standard_normal(x.shape)
    name = "log_softmax" if log else "softmax"
    forward = getattr(R, name)
    numeric = _numeric_gradient(lambda v: np.sum(g * forward(v, dim)), x)
    analytic = getattr(R, name + "_backward")(g, forward(x, dim), dim)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_oracle_cross_entropy_backward_matches_finite_differences(reduction):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 4)) * 2
    t = np.array([0, 3, -100, 1, 1])
    g = rng.standard_normal(5) if reduction == "none" else 0.7

    def loss(v):
        return np.sum(np.asarray(g) * R.cross_entropy(v, t, reduction))

    numeric = _numeric_gradient(loss, x)
    np.testing.assert_allclose(R.cross_entropy_backward(x, t, g, reduction), numeric, rtol=1e-6, atol=1e-8)


def test_oracle_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(13)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    g = rng.standard_normal((2, 3, 5))
    grad_input, grad_weight, grad_bias = R.linear_backward(g, x, w)
    np.testing.assert_allclose(grad_input, _numeric_gradient(lambda v: np.sum(g * R.linear(v, w, b)), x), rtol=1e-6)
    np.testing.assert_allclose(grad_weight, _numeric_gradient(lambda v: np.sum(g * R.linear(x, v, b)), w), rtol=1e-6)
    np.testing.assert_allclose(grad_bias, _numeric_gradient(lambda v: np.sum(g * R.linear(x, w, v)), b), rtol=1e-6)
