"""Activations and PReLU against the float64 oracle (and PyTorch where installed)."""

import concurrent.futures

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import cnnkit.functional as F
from cnnkit import _C
from cnnkit import reference as R
from devices import CPU
from tolerance import U, assert_close, assert_exact

# (op, keyword arguments): every activation, the parametrised ones with
# defaults and with other values (a negative softplus beta included).
CASES = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": -0.3}),
    ("elu", {}),
    ("elu", {"alpha": 1.7}),
    ("relu6", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("softplus", {}),
    ("softplus", {"beta": 2.5, "threshold": 7.0}),
    ("softplus", {"beta": -0.5, "threshold": 20.0}),
    ("hardtanh", {}),
    ("hardtanh", {"min_val": -0.5, "max_val": 6.0}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("silu", {}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CASES]

# Sizes around the vector widths (4, 8, 16 floats) and a few primes.
SIZES = [1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33]
# Where a branch changes: the gradient there must follow PyTorch's choice.
KINKS = np.array([0.0, -0.0, 6.0], np.float32)

# Results in the subnormal range carry an absolute error of up to half a
# subnormal ulp; with this floor added to A they are judged in absolute terms.
SUBNORMAL_FLOOR = 2.0**-126


def _magnitudes(name, kw, x, g):
    """A for the forward and the backward: the size of what each formula rounds.

    softplus scales x by beta before its exp/log: the rounding of beta * x
    moves the result by about |beta x| * f'(x) * u, which A must include.
    """
    x = x.astype(np.float64)
    g = g.astype(np.float64)
    a_fwd = np.abs(getattr(R, name)(x, **kw))
    a_bwd = np.abs(getattr(R, name + "_backward")(g, x, **kw))
    if name in ("gelu", "silu"):
        # x times a factor in [0, 1] that the kernels compute to a few ulps, and a
        # derivative whose two terms cancel near the function's minimum: |x| and |g| (1 + |x|).
        return np.abs(x), np.abs(g) * (1.0 + np.abs(x))
    if name == "softplus":
        bx = np.where(np.isfinite(x), kw.get("beta", 1.0) * x, 0.0)
        s = R.sigmoid(bx)
        a_fwd = a_fwd + np.abs(bx / kw.get("beta", 1.0)) * s
        a_bwd = a_bwd + np.abs(g) * s * R.sigmoid(-bx) * np.abs(bx)
    return a_fwd, a_bwd


def _check(name, kw, x, g, y, dx, floor=0.0):
    a_fwd, a_bwd = _magnitudes(name, kw, x, g)
    assert_close(y, getattr(R, name)(x, **kw), a_fwd + floor, 1, name)
    assert_close(dx, getattr(R, name + "_backward")(g, x, **kw), a_bwd + floor, 1, name + "_backward")


def _run(name, kw, x, g, device=CPU):
    return (device.call(getattr(F, name), x, **kw),
            device.call(getattr(F, name + "_backward"), g, x, **kw))


def _values(rng, shape, scale):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.random(flat.size) < 0.1
    flat[picks] = rng.choice(KINKS, size=int(picks.sum()))
    return x


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
@given(
    shape=st.lists(st.sampled_from(SIZES), min_size=1, max_size=3),
    scale=st.sampled_from([0.5, 3.0, 8.0]),
    seed=st.integers(0, 2**31),
)
def test_activation_matches_oracle(isa, device, name, kw, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = _values(rng, shape, scale)
    g = rng.standard_normal(shape).astype(np.float32)
    y, dx = _run(name, kw, x, g, device)
    assert y.dtype == np.float32 and y.shape == x.shape and dx.shape == x.shape
    _check(name, kw, x, g, y, dx)


CHEAP = ("relu", "leaky_relu", "relu6", "hardtanh")


def _native_name(name, kw):
    """The name _C.activation knows the op by (gelu's approximation is a kind of its own)."""
    return "gelu_tanh" if kw.get("approximate") == "tanh" else name


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_kernel_equals_reference_kernel_or_serial_run(isa, threads, name, kw):
    # Large enough to be split across threads. The scalar loops and the vector
    # kernels of the branch-only ops use the reference's formulas, so must not
    # change a bit; the vector exp-based ones must at least not depend on the split.
    rng = np.random.default_rng(7)
    shape = (4, 9, 61, 67)  # > 2 * 64k elements: two threads even for relu
    x = _values(rng, shape, 4.0)
    g = rng.standard_normal(shape).astype(np.float32)
    y, dx = _run(name, kw, x, g)
    if isa == "scalar" or name in CHEAP:
        params = {
            "alpha": kw.get("negative_slope", kw.get("alpha", 0.01 if name == "leaky_relu" else 1.0)),
            "beta": kw.get("beta", 1.0),
            "threshold": kw.get("threshold", 20.0),
            "min_val": kw.get("min_val", -1.0),
            "max_val": kw.get("max_val", 1.0),
        }
        native = _native_name(name, kw)
        want_y = _C.activation(native, x, reference=True, **params)
        want_dx = _C.activation_backward(native, g, x, reference=True, **params)
    else:
        previous = cnnkit.get_num_threads()
        cnnkit.set_num_threads(1)
        try:
            want_y, want_dx = _run(name, kw, x, g)
        finally:
            cnnkit.set_num_threads(previous)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(dx, want_dx)
    _check(name, kw, x, g, y, dx)


EXTREMES = np.array(
    [1e4, -1e4, np.inf, -np.inf, np.nan, 100.0, -100.0, 88.8, -88.8, 44.0, -44.0, 20.5, -20.5,
     7.0, -7.0, 6.0, 0.0, -0.0, 1e-30, -1e-30, 1e-40, -1e-40, 3e38, -3e38],
    np.float32,
)


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_extreme_inputs_stay_finite_and_nan_propagates(isa, name, kw):
    x = EXTREMES
    g = np.full_like(x, 2.5)
    with np.errstate(all="raise"):
        y, dx = _run(name, kw, x, g)
    finite = np.isfinite(x)
    assert np.isfinite(y[finite]).all(), f"{name}: non-finite output for finite input"
    assert np.isfinite(dx[finite]).all(), f"{name}: non-finite gradient for finite input"
    assert np.isnan(y[np.isnan(x)]).all(), f"{name}: NaN input must give NaN"
    _check(name, kw, x, g, y, dx, floor=SUBNORMAL_FLOOR)


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_agrees_with_torch(isa, name, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = np.concatenate([_values(rng, (200,), 3.0), EXTREMES])
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(name) or getattr(torch.nn.functional, name)
    ty = fn(tx, **kw)
    ty.backward(torch.tensor(g))
    y, dx = _run(name, kw, x, g)
    want_y, want_dx = ty.detach().numpy(), tx.grad.numpy()
    # PyTorch's softplus overflows to NaN past ~88 / beta when the threshold is
    # not reached first, its vectorised erf makes gelu(+inf) NaN (x * Phi(x) = inf),
    # its 0.5 x (1 + erf) overflows to inf past 1.7e38 and its tanh-GELU gradient
    # is NaN where x^2 overflows; cnnkit follows the formula there (the oracle
    # checks it), so only compare where torch is finite or x is not.
    keep = ~(np.isnan(want_dx) & ~np.isnan(x))
    keep_y = np.isfinite(want_y) | ~np.isfinite(x)
    keep_y[np.isnan(want_y) & (x == np.inf)] = False
    np.testing.assert_array_equal(np.isnan(y[keep_y]), np.isnan(want_y[keep_y]))
    np.testing.assert_allclose(y[keep_y], want_y[keep_y], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx[keep], want_dx[keep], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kw", [("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.25}),
                                     ("hardtanh", {"min_val": -3.0, "max_val": 5.0})])
def test_integer_fill_is_exact(isa, name, kw):
    rng = np.random.default_rng(11)
    x = rng.integers(-8, 9, size=(4, 9, 17))
    g = rng.integers(-8, 9, size=x.shape)
    y, dx = _run(name, kw, x, g)
    assert_exact(y, getattr(R, name)(x, **kw), name)
    assert_exact(dx, getattr(R, name + "_backward")(g, x, **kw), name + "_backward")


def _views():
    base = np.random.default_rng(5).standard_normal((9, 34)).astype(np.float32)
    raw = np.zeros(base.size * 4 + 1, np.uint8)
    unaligned = np.ndarray(base.shape, np.float32, raw.data, offset=1)
    unaligned[...] = base
    return {
        "transposed": base.T,
        "negative_stride": base[::-1, ::-2],
        "strided": base[::2, 1::3],
        "unaligned": unaligned,
    }


@pytest.mark.parametrize("view", ["transposed", "negative_stride", "strided", "unaligned"])
@pytest.mark.parametrize("name,kw", CASES[::2], ids=CASE_IDS[::2])
def test_views_equal_contiguous_copy(isa, view, name, kw):
    x = _views()[view]
    g = np.ascontiguousarray(x[::-1])
    y, dx = _run(name, kw, x, g)
    y_c, dx_c = _run(name, kw, np.ascontiguousarray(x), g)
    np.testing.assert_array_equal(y, y_c)
    np.testing.assert_array_equal(dx, dx_c)


def test_float64_and_integer_inputs_are_converted_to_float32():
    y = F.sigmoid(np.array([0.0, 1.0]))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(F.relu([[-2, 3]]), np.array([[0, 3]], np.float32))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 5)])
def test_empty_shapes(shape):
    x = np.ones(shape, np.float32)
    assert F.tanh(x).shape == shape
    assert F.tanh_backward(x, x).shape == shape


@pytest.mark.parametrize(
    "bad", [np.array([True, False]), np.array(["a"]), np.array([1 + 2j]), np.array([object()])]
)
def test_non_numeric_dtypes_raise_type_error(bad):
    with pytest.raises(TypeError, match="input"):
        F.relu(bad)


def test_bad_arguments_raise():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="grad_output"):
        F.sigmoid_backward(np.zeros((3, 2), np.float32), x)
    with pytest.raises(ValueError, match="beta"):
        F.softplus(x, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        F.softplus_backward(x, x, beta=float("inf"))
    with pytest.raises(ValueError, match="negative_slope"):
        F.leaky_relu(x, negative_slope=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        F.elu(x, alpha=1e39)  # not representable in float32
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, negative_slope="0.1")
    with pytest.raises(TypeError, match="alpha"):
        F.elu_backward(x, x, alpha=None)


def test_concurrent_calls_match_serial():
    x = np.random.default_rng(2).standard_normal((64, 1031)).astype(np.float32)
    want = F.softplus(x)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: F.softplus(x), range(16)))
    for got in results:
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# PReLU
# ---------------------------------------------------------------------------


def _prelu_magnitudes(x, w, g):
    """A for prelu forward/backward, and for grad_weight with its reduction length."""
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, g))
    a_y = np.abs(R.prelu(x64, np.abs(w64)))
    a_dx = np.abs(R.prelu_backward(np.abs(g64), x64, np.abs(w64))[0])
    a_dw = np.abs(R.prelu_backward(np.abs(g64), np.minimum(x64, 0.0), w64)[1])
    return a_y, a_dx, a_dw


@given(
    shape=st.lists(st.sampled_from(SIZES[:10]), min_size=1, max_size=4),
    shared=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_prelu_matches_oracle(isa, shape, shared, seed):
    rng = np.random.default_rng(seed)
    x = _values(rng, shape, 2.0)
    channels = shape[1] if len(shape) >= 2 else 1
    w = rng.standard_normal(1 if shared else channels).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    y = F.prelu(x, w)
    dx, dw = F.prelu_backward(g, x, w)
    assert dw.shape == w.shape and dw.dtype == np.float32
    ref_dx, ref_dw = R.prelu_backward(g, x, w)
    a_y, a_dx, a_dw = _prelu_magnitudes(x, w, g)
    assert_close(y, R.prelu(x, w), a_y, 1, "prelu")
    assert_close(dx, ref_dx, a_dx, 1, "prelu_backward.input")
    assert_close(dw, ref_dw, a_dw, x.size // w.size, "prelu_backward.weight")


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_threaded_matches_reference_kernel(isa, threads, shared):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((8, 17, 31, 37)).astype(np.float32)
    w = rng.standard_normal(1 if shared else 17).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    y = F.prelu(x, w)
    dx, dw = F.prelu_backward(g, x, w)
    np.testing.assert_array_equal(y, _C.prelu(x, w, reference=True))
    ref_dx, ref_dw = _C.prelu_backward(g, x, w, reference=True)
    np.testing.assert_array_equal(dx, ref_dx)
    a_y, a_dx, a_dw = _prelu_magnitudes(x, w, g)
    assert_close(dw, R.prelu_backward(g, x, w)[1], a_dw, x.size // w.size, "prelu_backward.weight")
    assert_close(ref_dw, R.prelu_backward(g, x, w)[1], a_dw, x.size // w.size, "prelu_backward.weight")


def test_prelu_integer_fill_is_exact(isa):
    rng = np.random.default_rng(17)
    x = rng.integers(-8, 9, size=(3, 5, 7, 2))
    g = rng.integers(-8, 9, size=x.shape)
    w = np.array([0.5, -0.25, 2.0, 0.0, 1.0], np.float32)
    assert_exact(F.prelu(x, w), R.prelu(x, w), "prelu")
    dx, dw = F.prelu_backward(g, x, w)
    ref_dx, ref_dw = R.prelu_backward(g, x, w)
    assert_exact(dx, ref_dx, "prelu_backward.input")
    assert_exact(dw, ref_dw, "prelu_backward.weight")


def test_prelu_nan_and_empty(isa):
    w = np.array([0.25], np.float32)
    dx, dw = F.prelu_backward(np.ones(3, np.float32), np.array([np.nan, -1.0, 1.0], np.float32), w)
    assert np.isnan(F.prelu(np.array([np.nan], np.float32), w)).all()
    np.testing.assert_array_equal(dx, [0.25, 0.25, 1.0])
    assert np.isnan(dw).all()
    dx, dw = F.prelu_backward(np.zeros((0, 3, 4)), np.zeros((0, 3, 4)), np.ones(3))
    assert dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(dw, np.zeros(3))


def test_prelu_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(19)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.prelu(tx, tw).backward(torch.tensor(g))
    dx, dw = F.prelu_backward(g, x, w)
    np.testing.assert_allclose(F.prelu(x, w), torch.nn.functional.prelu(tx, tw).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_prelu_bad_weight_raises():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="weight"):
        F.prelu(x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="weight"):
        F.prelu(x, np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="weight"):
        F.prelu(np.zeros(5, np.float32), np.ones(5, np.float32))  # 1-D input has one channel
    with pytest.raises(ValueError, match="grad_output"):
        F.prelu_backward(np.zeros((2, 3), np.float32), x, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="weight"):
        F.prelu(x, np.array([True]))


# ---------------------------------------------------------------------------
# the oracle's derivatives against central differences
# ---------------------------------------------------------------------------


def _away_from_kinks(rng, n, kw):
    x = rng.uniform(-9.0, 9.0, n)
    beta, threshold = kw.get("beta", 1.0), kw.get("threshold", 20.0)
    bad = (np.abs(x) < 1e-3) | (np.abs(x - 6.0) < 1e-3) | (np.abs(beta * x - threshold) < 1e-3)
    return x[~bad]


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_oracle_backward_matches_finite_differences(name, kw):
    rng = np.random.default_rng(23)
    x = _away_from_kinks(rng, 200, kw)
    g = rng.standard_normal(x.shape)
    h = 1e-6
    f = getattr(R, name)
    numeric = g * (f(x + h, **kw) - f(x - h, **kw)) / (2 * h)
    np.testing.assert_allclose(getattr(R, name + "_backward")(g, x, **kw), numeric, rtol=1e-6, atol=1e-8)


def test_oracle_prelu_backward_matches_finite_differences():
    rng = np.random.default_rng(29)
    x = rng.uniform(-3, 3, (2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5
    w = rng.standard_normal(3)
    g = rng.standard_normal(x.shape)
    h = 1e-6
    grad_input, grad_weight = R.prelu_backward(g, x, w)
    numeric_x = g * (R.prelu(x + h, w) - R.prelu(x - h, w)) / (2 * h)
    np.testing.assert_allclose(grad_input, numeric_x, rtol=1e-6, atol=1e-8)
    for c in range(3):
        e = np.zeros(3)
        e[c] = h
        numeric_w = (np.sum(g * R.prelu(x, w + e)) - np.sum(g * R.prelu(x, w - e))) / (2 * h)
        np.testing.assert_allclose(grad_weight[c], numeric_w, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "softplus", "hardtanh", "gelu", "gelu_tanh", "silu"])
def test_dispatch_picks_the_widest_enabled_kernel(isa, name):
    want = {"scalar": "threaded", "avx2": "vector_avx2", "avx512": "vector_avx512"}[isa]
    assert _C.activation_implementation(name) == want


def test_dispatch_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown activation"):
        _C.activation_implementation("swish")


# ---------------------------------------------------------------------------
# accuracy of the exp-based kernels over the whole float range
# ---------------------------------------------------------------------------


def _dense_sweep():
    """Every 2**-15 step in [-24, 24] (1.5M floats), plus log-spaced tails out to +-3e38,
    values around the overflow/underflow and threshold edges, and the specials."""
    tails = np.geomspace(1e-38, 3e38, 200_001)
    edges = np.concatenate([np.linspace(c - 0.5, c + 0.5, 4001) for c in (-104.0, -87.3, 88.7, 20.0)])
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45]
    x = np.concatenate([np.arange(-24.0, 24.0, 2.0**-15), tails, -tails, edges, specials])
    return x.astype(np.float32)


# Measured worst relative errors in units of u = 2**-24 (scalar libm / vector kernels):
# tanh 2.6/2.7 forward, 3.8/4.5 backward; sigmoid 3.0/3.0 and 2.0/4.7; elu 1.2/1.4 and 1.0/1.3;
# softplus 2.0/3.6 and 3.0/3.0. The tolerance rule allows 8 (K = 1, A = |y|).
MAX_RELATIVE_ERROR_U = 6.0


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "elu", "softplus"])
def test_relative_error_over_dense_sweep(isa, name):
    x = _dense_sweep()
    g = np.ones_like(x)
    y, dx = _run(name, {}, x, g)
    x64 = x.astype(np.float64)
    for op, got, want in [(name, y, getattr(R, name)(x64)), (name + "_backward", dx, getattr(R, name + "_backward")(g, x64))]:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=op)
        inf = np.isinf(want)
        np.testing.assert_array_equal(got[inf], want[inf], err_msg=op)
        # Below the normal range float32 has fewer digits: judged against half a subnormal ulp.
        judged = np.isfinite(want)
        err = np.abs(got[judged] - want[judged])
        rel = err / np.maximum(np.abs(want[judged]), 2.0**-126) / U
        worst = int(np.argmax(rel))
        assert rel[worst] <= MAX_RELATIVE_ERROR_U, (
            f"{op} under {isa}: {rel[worst]:.2f} u at x = {x[judged][worst]!r}"
        )
        assert_close(got, want, np.abs(want) + SUBNORMAL_FLOOR, 1, op)


@given(n=st.sampled_from(SIZES + [1000, 40000]), ints=st.booleans(), seed=st.integers(0, 2**31))
def test_add_and_add_relu_are_exact(isa, threads, n, ints, seed):
    """add and add_relu against NumPy's float32 sum (one rounding, so exact), add_relu with
    relu's formula (-0 and NaN kept), in the production kernels and the reference, in place too."""
    rng = np.random.default_rng(seed)
    if ints:
        a, b = (rng.integers(-50, 50, n).astype(np.float32) for _ in range(2))
    else:
        a, b = (rng.standard_normal(n).astype(np.float32) * 10 for _ in range(2))
    if n > 20:
        a[:3] = np.nan
    total = (a.astype(np.float64) + b).astype(np.float32)  # the float64 sum, rounded once
    assert_exact(F.add(a, b), total, "add")
    assert_exact(F.add_relu(a, b), np.where(total < 0, np.float32(0), total), "add_relu")
    for relu in (False, True):
        expected = _C.add(a, b, relu=relu)
        assert_exact(_C.add(a, b, relu=relu, reference=True), expected, "add reference")
        in_place = a.copy()
        assert _C.add(in_place, b, relu=relu, out=in_place) is in_place
        assert_exact(in_place, expected, "add in place")


def test_add_refuses_mismatched_shapes():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"add_relu: input and other must have one shape, got \(2, 3\) and \(3, 2\)"):
        F.add_relu(a, a.T)
    with pytest.raises(ValueError, match="out must have the input's shape"):
        _C.add(a, a, out=np.ones(5, np.float32))
