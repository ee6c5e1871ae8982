"""The CUDA SGEMM, conv2d and linear kernels.

Three layers of tests:
- the kernels' per-thread work (tile loads, im2col/col2im maps, implicit-GEMM gathers, direct
  output elements, split-K sums, row reductions) run over the whole grid by the host emulator,
  ``cnnkit._cuda.emulate``, against the float64 oracle: these run on any machine with the CUDA
  module built;
- the Python ops' and bindings' argument errors, with stand-in objects that export
  ``__cuda_array_interface__`` (no kernel runs): these too run without a GPU;
- the kernels on a GPU, through ``cnnkit.cuda.ops_conv`` / ``ops_linear`` and ``_cuda.sgemm``,
  with every output poisoned with NaN before the call: these skip themselves without a GPU.
"""

import contextlib
import inspect
import math
import types
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import functional as F
from cnnkit import reference
from test_conv import _normalise, conv_cases
from tolerance import assert_close, assert_exact

_cuda = pytest.importorskip("cnnkit._cuda", reason="cnnkit was built without CUDA")
from cnnkit.cuda import _device, ops_conv, ops_linear  # noqa: E402  (needs the CUDA module)

emulate = _cuda.emulate
CONV_ALGOS = ["direct", "im2col", "implicit_gemm", "auto"]
# Around the tile shapes (64 and 128) and the float4 width, where edge handling changes.
GEMM_SIZES = st.one_of(st.integers(0, 20), st.sampled_from([31, 32, 33, 63, 64, 65, 127, 128, 129]))


def _fill(rng, shape, integer):
    """Small integers (every sum exact in float32, whatever its order) or normal floats."""
    if integer:
        return rng.integers(-8, 9, size=shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _check(got, want, magnitude, k, op, integer):
    if integer:
        assert_exact(got, want, op)
    else:
        assert_close(got, want, magnitude, k, op)


def _sgemm_oracle(a, b, c, trans_a, trans_b, alpha, beta):
    """(expected, magnitude) of alpha * op(a) @ op(b) + beta * c in float64."""
    A = np.asarray(a.T if trans_a else a, dtype=np.float64)
    B = np.asarray(b.T if trans_b else b, dtype=np.float64)
    want = alpha * (A @ B)
    magnitude = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0:
        want = want + beta * c
        magnitude = magnitude + abs(beta) * np.abs(c)
    return want, magnitude


def _sgemm_operands(rng, m, n, k, trans_a, trans_b, beta, integer):
    a = _fill(rng, (k, m) if trans_a else (m, k), integer)
    b = _fill(rng, (n, k) if trans_b else (k, n), integer)
    # beta == 0 must not read C, as in BLAS: a NaN there must not reach the result.
    c = _fill(rng, (m, n), integer) if beta != 0 else np.full((m, n), np.nan, np.float32)
    return a, b, c


# ---------------------------------------------------------------------------------------------
# the emulated kernels against the oracle (no GPU needed)
# ---------------------------------------------------------------------------------------------


@given(m=GEMM_SIZES, n=GEMM_SIZES, k=st.integers(0, 40), trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, 0.25]), integer=st.booleans(),
       seed=st.integers(0, 2**31))
def test_emulated_sgemm_matches_oracle(m, n, k, trans_a, trans_b, alpha, beta, integer, seed):
    a, b, c = _sgemm_operands(np.random.default_rng(seed), m, n, k, trans_a, trans_b, beta, integer)
    want, magnitude = _sgemm_oracle(a, b, c, trans_a, trans_b, alpha, beta)
    for algo in ("tiled", "reference"):
        got = emulate.sgemm(a, b, c, trans_a, trans_b, alpha, beta, algo)
        _check(got, want, magnitude, k + 1, f"cuda sgemm[{algo}] (emulated)", integer)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_emulated_sgemm_large_tiles(trans_a, trans_b):
    # 11 x 12 tiles of 128 x 128: enough for the large tile shape, and no dimension a multiple of it.
    m, n, k = 1283, 1411, 9
    a, b, c = _sgemm_operands(np.random.default_rng(7), m, n, k, trans_a, trans_b, 0.5, False)
    want, magnitude = _sgemm_oracle(a, b, c, trans_a, trans_b, 1.0, 0.5)
    tiled = emulate.sgemm(a, b, c, trans_a, trans_b, 1.0, 0.5, "tiled")
    assert_close(tiled, want, magnitude, k + 1, "cuda sgemm[tiled] (emulated)")
    # Every tile shape adds the depth in the same order as the plain kernel.
    np.testing.assert_array_equal(tiled, emulate.sgemm(a, b, c, trans_a, trans_b, 1.0, 0.5, "reference"))


def _conv_case_arrays(case, seed, integer):
    rng = np.random.default_rng(seed)
    x = _fill(rng, case["x_shape"], integer)
    w = _fill(rng, case["w_shape"], integer)
    b = _fill(rng, (case["w_shape"][0],), integer) if case["bias"] else None
    stride, pads, dilation = _normalise(case["w_shape"][2:], case["stride"], case["padding"], case["dilation"])
    return rng, x, w, b, (stride, pads, dilation, case["groups"])


def _conv_oracle(x, w, b, dy, params):
    """Expected forward and gradients, their magnitudes and reduction lengths."""
    y = reference.conv2d(x, w, b, *params)
    y_mag = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *params)
    grads = reference.conv2d_backward(dy, x, w, *params)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *params)
    k_out, cg, kh, kw = w.shape
    groups = params[3]
    positions = y.shape[0] * y.shape[2] * y.shape[3]
    ks = [cg * kh * kw + 1, k_out // groups * kh * kw, positions, positions]
    return [y, *grads], [y_mag, *mags], ks


def _check_conv(results, x, w, b, dy, params, algo, integer, where):
    wants, mags, ks = _conv_oracle(x, w, b, dy, params)
    names = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias"]
    for got, want, mag, k, name in zip(results, wants, mags, ks, names):
        if got is not None:
            _check(got, want, mag, k, f"cuda {name}[{algo}] ({where})", integer)


@given(case=conv_cases(), seed=st.integers(0, 2**31), integer=st.booleans())
def test_emulated_conv2d_matches_oracle(case, seed, integer):
    rng, x, w, b, params = _conv_case_arrays(case, seed, integer)
    y_shape = reference.conv2d(x, w, b, *params).shape
    dy = _fill(rng, y_shape, integer)
    for algo in CONV_ALGOS:
        y = emulate.conv2d(x, w, b, *params, algo)
        grads = emulate.conv2d_backward(dy, x, w, *params, algo, True, True, b is not None)
        assert grads[2] is None or b is not None
        _check_conv([y, *grads], x, w, b, dy, params, algo, integer, "emulated")


# A weight gradient whose depth (the batch's output positions) is long next to its few tiles:
# split into chunks whose partial sums go through the scratch.
SPLIT_CASE = dict(x=(4, 6, 17, 16), w=(8, 3, 3, 3), params=((1, 1), (1, 1, 1, 1), (1, 1), 2))


@pytest.mark.parametrize("algo", CONV_ALGOS)
def test_emulated_weight_gradient_split_over_the_batch(algo):
    rng = np.random.default_rng(3)
    x, w = _fill(rng, SPLIT_CASE["x"], False), _fill(rng, SPLIT_CASE["w"], False)
    params = SPLIT_CASE["params"]
    if algo in ("implicit_gemm", "auto"):
        # The case is meant to split: the scratch holds one weight gradient per chunk.
        scratch = _cuda.conv2d_workspace(x.shape, w.shape, *params, algo, True, False, True)
        assert scratch >= 2 * w.size
    dy = _fill(rng, reference.conv2d(x, w, None, *params).shape, False)
    grads = emulate.conv2d_backward(dy, x, w, *params, algo, True, True, True)
    _check_conv([None, *grads], x, w, None, dy, params, algo, False, "emulated")


@pytest.mark.parametrize("algo", CONV_ALGOS)
def test_emulated_pointwise_conv2d_multiplies_the_images_directly(algo):
    rng = np.random.default_rng(5)
    x, w, b = _fill(rng, (3, 6, 5, 7), False), _fill(rng, (4, 3, 1, 1), False), _fill(rng, (4,), False)
    params = ((1, 1), (0, 0, 0, 0), (1, 1), 2)
    # No column matrix: the images are the GEMM's operands as they are.
    assert _cuda.conv2d_workspace(x.shape, w.shape, *params, "im2col", True) == 0
    dy = _fill(rng, (3, 4, 5, 7), False)
    results = [emulate.conv2d(x, w, b, *params, algo), *emulate.conv2d_backward(dy, x, w, *params, algo)]
    _check_conv(results, x, w, b, dy, params, algo, False, "emulated")


@pytest.mark.parametrize("algo", CONV_ALGOS)
def test_emulated_conv2d_of_an_empty_batch(algo):
    x = np.zeros((0, 4, 5, 5), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    params = ((1, 1), (0, 0, 0, 0), (1, 1), 2)
    assert emulate.conv2d(x, w, None, *params, algo).shape == (0, 6, 3, 3)
    dx, dw, db = emulate.conv2d_backward(np.zeros((0, 6, 3, 3), np.float32), x, w, *params, algo)
    assert dx.shape == x.shape
    # Nothing to sum: the gradients are zero, not left unwritten.
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros(6, np.float32))


@given(rows=GEMM_SIZES, features=st.integers(0, 40), out=GEMM_SIZES, bias=st.booleans(), integer=st.booleans(),
       seed=st.integers(0, 2**31))
def test_emulated_linear_matches_oracle(rows, features, out, bias, integer, seed):
    rng = np.random.default_rng(seed)
    x, w = _fill(rng, (rows, features), integer), _fill(rng, (out, features), integer)
    b = _fill(rng, (out,), integer) if bias else None
    dy = _fill(rng, (rows, out), integer)
    _check_linear(emulate.linear(x, w, b), emulate.linear_backward(dy, x, w), x, w, b, dy, integer, "emulated")


def _check_linear(y, grads, x, w, b, dy, integer, where):
    mag_b = None if b is None else np.abs(b)
    _check(y, reference.linear(x, w, b), reference.linear(np.abs(x), np.abs(w), mag_b), x.shape[-1] + 1,
           f"cuda linear ({where})", integer)
    wants = reference.linear_backward(dy, x, w)
    mags = reference.linear_backward(np.abs(dy), np.abs(x), np.abs(w))
    rows = int(np.prod(x.shape[:-1]))
    for got, want, mag, k, name in zip(grads, wants, mags, [w.shape[0], rows, rows], ["input", "weight", "bias"]):
        if got is not None:
            _check(got, want, mag, k, f"cuda linear_grad_{name} ({where})", integer)


# ---------------------------------------------------------------------------------------------
# argument errors, with stand-ins for device arrays (no GPU needed: nothing reaches a kernel)
# ---------------------------------------------------------------------------------------------


class FakeCudaArray:
    """Exports __cuda_array_interface__ like a CuPy array, with a pointer no kernel ever reads."""

    def __init__(self, shape, dtype="float32", device=0, readonly=False, strides=None):
        self.shape, self.ndim, self.dtype = tuple(shape), len(shape), np.dtype(dtype)
        self.device = types.SimpleNamespace(id=device)
        self.__cuda_array_interface__ = dict(shape=self.shape, typestr=self.dtype.str, version=3, strides=strides,
                                             data=(0x7F0000000000 if math.prod(shape) else 0, readonly))

    def __getitem__(self, key):
        assert key is None, "only x[None] is needed here"
        return FakeCudaArray((1, *self.shape), self.dtype, self.device.id)


def fake(*shape, **kwargs):
    return FakeCudaArray(shape, **kwargs)


X, W = fake(2, 4, 8, 8), fake(6, 2, 3, 3)  # a valid grouped conv: groups=2


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops_conv.conv2d(X, np.zeros((6, 2, 3, 3), np.float32), groups=2), TypeError,
     "weight must be a CUDA array like input"),
    (lambda: ops_conv.conv2d(np.zeros((2, 4, 8, 8), np.float32), W, groups=2), TypeError, "input must be a CUDA array"),
    (lambda: ops_conv.conv2d(X, fake(6, 2, 3, 3, device=1), groups=2), ValueError, "weight is on cuda:1"),
    (lambda: ops_conv.conv2d(fake(2, 4, 8, 8, dtype="float64"), W, groups=2), TypeError, "input must be float32"),
    (lambda: ops_conv.conv2d(fake(4, 8), W, groups=2), ValueError, "input must be 3 or 4-D"),
    (lambda: ops_conv.conv2d(X, fake(6, 2, 3), groups=2), ValueError, "weight must be 4-D"),
    (lambda: ops_conv.conv2d(X, W, fake(6, 1), groups=2), ValueError, "bias must be 1-D"),
    (lambda: ops_conv.conv2d(X, W, groups=3), ValueError, "input channels per group"),
    (lambda: ops_conv.conv2d(X, fake(5, 2, 3, 3), groups=2), ValueError, "out_channels 5 is not divisible"),
    (lambda: ops_conv.conv2d(X, W, groups=0), ValueError, "groups must be >= 1"),
    (lambda: ops_conv.conv2d(X, W, stride=0, groups=2), ValueError, "stride must be >= 1"),
    (lambda: ops_conv.conv2d(X, W, dilation=(1, 0), groups=2), ValueError, "dilation must be >= 1"),
    (lambda: ops_conv.conv2d(X, W, padding=-1, groups=2), ValueError, "padding must be >= 0"),
    (lambda: ops_conv.conv2d(X, W, padding="same", stride=2, groups=2), ValueError, "padding='same'"),
    (lambda: ops_conv.conv2d(X, W, padding=2**40, groups=2), OverflowError, "padding"),
    (lambda: ops_conv.conv2d(X, W, padding=2**70, groups=2), OverflowError, "padding"),
    (lambda: ops_conv.conv2d(X, W, stride=(1, 2**64), groups=2), OverflowError, "stride"),
    (lambda: ops_conv.conv2d(X, fake(6, 2, 9, 9), groups=2), ValueError, "smaller than the dilated kernel"),
    (lambda: ops_conv.conv2d(X, W, groups=2, algo="winograd"), ValueError, "algo must be one of"),
    (lambda: ops_conv.conv2d_backward(fake(2, 6, 6), X, W, groups=2), ValueError, "grad_output must be 4-D"),
    (lambda: ops_conv.conv2d_backward(fake(2, 6, 6, 6, device=1), X, W, groups=2), ValueError,
     "grad_output is on cuda:1"),
    (lambda: ops_linear.linear(fake(), fake(3, 4)), ValueError, "at least 1 dimension"),
    (lambda: ops_linear.linear(fake(2, 4), fake(4)), ValueError, "weight must be 2-D"),
    (lambda: ops_linear.linear(fake(2, 5), fake(3, 4)), ValueError, "input has 5 features"),
    (lambda: ops_linear.linear(fake(2, 4), np.zeros((3, 4), np.float32)), TypeError, "weight must be a CUDA array"),
    (lambda: ops_linear.linear_backward(fake(2, 4), fake(2, 4), fake(3, 4)), ValueError,
     r"grad_output must have shape \(2, 3\)"),
])
def test_ops_refuse_bad_arguments_before_any_kernel(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("module, name", [(ops_conv, "conv2d"), (ops_conv, "conv2d_backward"),
                                          (ops_linear, "linear"), (ops_linear, "linear_backward")])
def test_ops_have_the_signatures_of_their_functional_twins(module, name):
    assert name in module.__all__
    assert inspect.signature(getattr(module, name)) == inspect.signature(getattr(F, name))


CONV_PARAMS = ((1, 1), (0, 0, 0, 0), (1, 1), 2)


@pytest.mark.parametrize("call, error, message", [
    (lambda: _cuda.conv2d(X, W, fake(5), fake(2, 6, 6, 6), None, *CONV_PARAMS, "auto", 0), ValueError,
     r"bias must have shape \(6,\)"),
    (lambda: _cuda.conv2d(X, W, None, fake(2, 6, 6, 5), None, *CONV_PARAMS, "auto", 0), ValueError,
     r"out must have shape \(2, 6, 6, 6\)"),
    (lambda: _cuda.conv2d(X, W, None, fake(2, 6, 6, 6, readonly=True), None, *CONV_PARAMS, "auto", 0), ValueError,
     "out is read-only"),
    (lambda: _cuda.conv2d(X, W, None, fake(2, 6, 6, 6, dtype="int64"), None, *CONV_PARAMS, "auto", 0), TypeError,
     "out must have typestr <f4"),
    (lambda: _cuda.conv2d(X, W, None, fake(2, 6, 6, 6), None, *CONV_PARAMS, "im2col", 0), ValueError,
     "workspace has 0 floats"),
    (lambda: _cuda.conv2d(fake(2, 4, 8, 8, strides=(4, 512, 64, 8)), W, None, fake(2, 6, 6, 6), None, *CONV_PARAMS,
                          "auto", 0), ValueError, "input must be C-contiguous"),
    (lambda: _cuda.conv2d(X, W, None, np.zeros((2, 6, 6, 6), np.float32), None, *CONV_PARAMS, "auto", 0),
     TypeError, "out is not a CUDA array"),
    (lambda: _cuda.conv2d_backward(fake(2, 6, 6, 6), X, W, fake(2, 4, 8, 7), None, None, None, *CONV_PARAMS, "auto",
                                   0), ValueError, r"grad_input must have shape \(2, 4, 8, 8\)"),
    (lambda: _cuda.sgemm(fake(3, 4), fake(5, 6), fake(3, 6)), ValueError, "b has inner dimension 5, a has 4"),
    (lambda: _cuda.sgemm(fake(3, 4), fake(4, 6), fake(6, 3)), ValueError, r"out must be \(3, 6\)"),
    (lambda: _cuda.sgemm(fake(3, 4), fake(4, 6), fake(3, 6), algo="fast"), ValueError, "algo must be"),
    (lambda: _cuda.linear(fake(2, 4), fake(3, 4), None, fake(2, 4), 0), ValueError, r"out must have shape \(2, 3\)"),
    (lambda: _cuda.linear_backward(fake(2, 3), fake(2, 4), fake(3, 4), None, fake(4, 3), None, 0), ValueError,
     r"grad_weight must have shape \(3, 4\)"),
])
def test_bindings_check_shapes_before_touching_device_memory(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_workspace_query_names_the_sizes_an_algorithm_needs():
    # im2col: one image's column matrix; direct and the implicit GEMM forward: none.
    args = ((2, 4, 8, 8), (6, 2, 3, 3), *CONV_PARAMS)
    assert _cuda.conv2d_workspace(*args, "im2col") == 4 * 9 * 36
    assert _cuda.conv2d_workspace(*args, "direct") == 0
    assert _cuda.conv2d_workspace(*args, "implicit_gemm") == 0
    assert _cuda.conv2d_workspace(*args, "direct", True) == 0


# ---------------------------------------------------------------------------------------------
# the Python ops end to end on the host: NumPy arrays stand in for device arrays and the
# emulator for the bindings (no GPU needed)
# ---------------------------------------------------------------------------------------------


class EmulatedBindings:
    """The bindings the ops call, run by the emulator on NumPy arrays, writing into the outputs
    the ops allocated (poisoned with NaN) as the GPU kernels would."""

    conv2d_workspace = staticmethod(_cuda.conv2d_workspace)

    @staticmethod
    def conv2d(x, w, b, out, workspace, stride, padding, dilation, groups, algo, stream):
        out[...] = emulate.conv2d(x, w, b, stride, padding, dilation, groups, algo)

    @staticmethod
    def conv2d_backward(dy, x, w, dx, dw, db, workspace, stride, padding, dilation, groups, algo, stream):
        grads = emulate.conv2d_backward(dy, x, w, stride, padding, dilation, groups, algo, dx is not None,
                                        dw is not None, db is not None)
        for out, grad in zip((dx, dw, db), grads):
            if out is not None:
                out[...] = grad

    @staticmethod
    def linear(x, w, b, out, stream):
        out[...] = emulate.linear(x, w, b)

    @staticmethod
    def linear_backward(dy, x, w, dx, dw, db, stream):
        for out, grad in zip((dx, dw, db), emulate.linear_backward(dy, x, w)):
            if out is not None:
                out[...] = grad


@contextlib.contextmanager
def _host_ops():
    def poisoned(shape, like, dtype="float32"):
        return np.full(shape, np.nan, dtype)

    patches = [(ops_conv, "_cuda", EmulatedBindings), (ops_linear, "_cuda", EmulatedBindings),
               (ops_conv, "is_cuda_array", lambda x: isinstance(x, np.ndarray)),
               (ops_conv, "device_index", lambda x: 0), (ops_conv, "stream_of", lambda x: 0),
               (ops_linear, "stream_of", lambda x: 0), (ops_conv, "empty", poisoned), (ops_linear, "empty", poisoned),
               (ops_conv, "_contiguous", np.ascontiguousarray), (ops_linear, "_contiguous", np.ascontiguousarray)]
    with contextlib.ExitStack() as stack:
        for module, name, value in patches:
            stack.enter_context(mock.patch.object(module, name, value))
        yield


@given(case=conv_cases(), seed=st.integers(0, 2**31), unbatched=st.booleans(),
       flags=st.tuples(st.booleans(), st.booleans(), st.booleans()), algo=st.sampled_from(CONV_ALGOS))
def test_conv_ops_on_the_host_match_the_cpu_path(case, seed, unbatched, flags, algo):
    rng, x, w, b, _ = _conv_case_arrays(case, seed, True)
    if unbatched:
        x = x[0]
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    y = F.conv2d(x, w, b, *args)
    dy = _fill(rng, y.shape, True)
    want = F.conv2d_backward(dy, x, w, *args, input_grad=flags[0], weight_grad=flags[1], bias_grad=flags[2])
    with _host_ops():
        got_y = ops_conv.conv2d(x, w, b, *args, algo=algo)
        got = ops_conv.conv2d_backward(dy, x, w, *args, input_grad=flags[0], weight_grad=flags[1],
                                       bias_grad=flags[2], algo=algo)
    # Small-integer fills: both paths are exact, whatever their summation order.
    np.testing.assert_array_equal(got_y, y)
    for g, wg in zip(got, want):
        assert (g is None) == (wg is None)
        if g is not None:
            np.testing.assert_array_equal(g, wg)


@given(lead=st.lists(st.integers(0, 4), max_size=3), features=st.integers(1, 20), out=st.integers(0, 20),
       bias=st.booleans(), flags=st.tuples(st.booleans(), st.booleans(), st.booleans()), seed=st.integers(0, 2**31))
def test_linear_ops_on_the_host_match_the_cpu_path(lead, features, out, bias, flags, seed):
    rng = np.random.default_rng(seed)
    x, w = _fill(rng, (*lead, features), True), _fill(rng, (out, features), True)
    b = _fill(rng, (out,), True) if bias else None
    dy = _fill(rng, (*lead, out), True)
    kw = dict(input_grad=flags[0], weight_grad=flags[1], bias_grad=flags[2])
    with _host_ops():
        got_y = ops_linear.linear(x, w, b)
        got = ops_linear.linear_backward(dy, x, w, **kw)
    np.testing.assert_array_equal(got_y, F.linear(x, w, b))
    for g, wg in zip(got, F.linear_backward(dy, x, w, **kw)):
        assert (g is None) == (wg is None)
        if g is not None:
            np.testing.assert_array_equal(g, wg)


# ---------------------------------------------------------------------------------------------
# on a GPU (skipped without one)
# ---------------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not cnnkit.cuda.is_available(),
                         reason=f"no usable CUDA device: {cnnkit.cuda.unavailable_reason()}")


def _array_library():
    """CuPy if importable, else PyTorch: the caller's kind of device array."""
    try:
        import cupy
        return "cupy", cupy
    except ImportError:
        return "torch", pytest.importorskip("torch", reason="neither CuPy nor PyTorch is installed")


def _to_device(a):
    if a is None:
        return None
    kind, lib = _array_library()
    return lib.asarray(a) if kind == "cupy" else lib.from_numpy(np.ascontiguousarray(a)).cuda()


def _to_host(a):
    if a is None:
        return None
    kind, lib = _array_library()
    return lib.asnumpy(a) if kind == "cupy" else a.cpu().numpy()


def _poisoned_empty(shape, like, dtype="float32"):
    out = _device.empty(shape, like, dtype)
    if _device._is_torch(out):
        out.fill_(float("nan"))
    else:
        out.fill(np.nan)
    return out


@contextlib.contextmanager
def _poisoned_outputs():
    """Every array the ops allocate (outputs and scratch) starts as NaN: an element no kernel
    writes, or scratch read before it is written, fails the comparison."""
    with mock.patch.object(ops_conv, "empty", _poisoned_empty), mock.patch.object(ops_linear, "empty", _poisoned_empty):
        yield


def _gpu_conv(x, w, b, dy, case_params, algo):
    """Forward and gradients on the GPU through the ops, with the functional-style arguments."""
    stride, padding, dilation, groups = case_params
    dx_, dw_, b_, dy_ = _to_device(x), _to_device(w), _to_device(b), _to_device(dy)
    with _poisoned_outputs():
        y = ops_conv.conv2d(dx_, dw_, b_, stride, padding, dilation, groups, algo=algo)
        grads = ops_conv.conv2d_backward(dy_, dx_, dw_, stride, padding, dilation, groups, bias_grad=b is not None,
                                         algo=algo)
    return [_to_host(y), *(_to_host(g) for g in grads)]


@gpu
@given(case=conv_cases(), seed=st.integers(0, 2**31), integer=st.booleans())
def test_gpu_conv2d_matches_oracle(case, seed, integer):
    rng, x, w, b, params = _conv_case_arrays(case, seed, integer)
    dy = _fill(rng, reference.conv2d(x, w, b, *params).shape, integer)
    case_params = (case["stride"], case["padding"], case["dilation"], case["groups"])
    for algo in CONV_ALGOS:
        _check_conv(_gpu_conv(x, w, b, dy, case_params, algo), x, w, b, dy, params, algo, integer, "GPU")


# The 8 layers of shapes/targets.txt (batch 2, so that the float64 oracle stays quick), plus the
# split-K case: the tile shapes, float4 loads and chunked sums the small random cases miss.
TARGET_LAYERS = [
    ((2, 1, 32, 32), (6, 1, 5, 5), 1, 0), ((2, 6, 14, 14), (16, 6, 5, 5), 1, 0), ((2, 32, 14, 14), (64, 32, 5, 5), 1, 2),
    ((2, 64, 56, 56), (64, 64, 3, 3), 1, 1), ((2, 128, 28, 28), (256, 128, 3, 3), 2, 1),
    ((2, 256, 14, 14), (256, 256, 1, 1), 1, 0), ((2, 3, 227, 227), (96, 3, 11, 11), 4, 0),
    ((2, 128, 28, 28), (128, 128, 3, 3), 1, 1), ((4, 6, 17, 16), (8, 3, 3, 3), 1, 1),
]


@gpu
@pytest.mark.parametrize("algo", CONV_ALGOS)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", TARGET_LAYERS)
def test_gpu_conv2d_target_layers(x_shape, w_shape, stride, padding, algo):
    rng = np.random.default_rng(11)
    x, w, b = _fill(rng, x_shape, False), _fill(rng, w_shape, False), _fill(rng, (w_shape[0],), False)
    groups = x_shape[1] // w_shape[1]
    params = _normalise(w_shape[2:], stride, padding, 1) + (groups,)
    dy = _fill(rng, reference.conv2d(x, w, b, *params).shape, False)
    results = _gpu_conv(x, w, b, dy, (stride, padding, 1, groups), algo)
    _check_conv(results, x, w, b, dy, params, algo, False, "GPU")
    # No atomics: a second run gives the same bits.
    again = _gpu_conv(x, w, b, dy, (stride, padding, 1, groups), algo)
    for first, second in zip(results, again):
        np.testing.assert_array_equal(first, second)


@gpu
@pytest.mark.parametrize("algo", ["tiled", "reference"])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (65, 129, 33), (1024, 1024, 1024), (1283, 1411, 77), (7, 3000, 500)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gpu_sgemm_matches_oracle(m, n, k, trans_a, trans_b, algo):
    for beta in (0.0, 0.5):
        a, b, c = _sgemm_operands(np.random.default_rng(m + n + k), m, n, k, trans_a, trans_b, beta, False)
        want, magnitude = _sgemm_oracle(a, b, c, trans_a, trans_b, 1.5, beta)
        out = _to_device(c)  # NaN where beta == 0: the kernel must overwrite every element
        _cuda.sgemm(_to_device(a), _to_device(b), out, trans_a, trans_b, 1.5, beta, algo,
                    _device.stream_of(out))
        assert_close(_to_host(out), want, magnitude, k + 1, f"cuda sgemm[{algo}] (GPU)")


@gpu
@given(lead=st.lists(st.integers(0, 5), max_size=2), features=st.integers(0, 70), out=GEMM_SIZES,
       bias=st.booleans(), integer=st.booleans(), seed=st.integers(0, 2**31))
def test_gpu_linear_matches_oracle(lead, features, out, bias, integer, seed):
    rng = np.random.default_rng(seed)
    x, w = _fill(rng, (*lead, features), integer), _fill(rng, (out, features), integer)
    b = _fill(rng, (out,), integer) if bias else None
    dy = _fill(rng, (*lead, out), integer)
    with _poisoned_outputs():
        y = ops_linear.linear(_to_device(x), _to_device(w), _to_device(b))
        grads = ops_linear.linear_backward(_to_device(dy), _to_device(x), _to_device(w))
    x2, dy2 = x.reshape(-1, features), dy.reshape(-1, out)
    _check_linear(_to_host(y).reshape(-1, out), [_to_host(grads[0]).reshape(x2.shape), *map(_to_host, grads[1:])],
                  x2, w, b, dy2, integer, "GPU")
