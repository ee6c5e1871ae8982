"""The C++ SGEMM (used by im2col convolution and linear) against NumPy float64."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _C
from conftest import supported_isas
from tolerance import assert_close, assert_exact


def _operands(rng, m, n, k, trans_a, trans_b, integer):
    make = (lambda *s: rng.integers(-8, 9, size=s)) if integer else (lambda *s: rng.standard_normal(s))
    a = make(k, m) if trans_a else make(m, k)
    b = make(n, k) if trans_b else make(k, n)
    return a.astype(np.float32), b.astype(np.float32)


def _oracle(a, b, trans_a, trans_b):
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    return a64 @ b64, np.abs(a64) @ np.abs(b64)


# Sizes straddle the register tiles (scalar 4x8, avx2 6x16, avx512 14x32: every
# rows-left count and the half-width column edge) and the cache blocks (MC 120/144,
# KC 256, where K is split into even depth blocks).
_dims = st.sampled_from([1, 2, 3, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 28, 31, 32, 33, 47, 48, 49, 97, 121, 143, 145, 255, 257, 300])


@given(m=_dims, n=_dims, k=_dims, trans_a=st.booleans(), trans_b=st.booleans(), seed=st.integers(0, 2**31))
def test_sgemm_matches_oracle(isa, threads, m, n, k, trans_a, trans_b, seed):
    a, b = _operands(np.random.default_rng(seed), m, n, k, trans_a, trans_b, integer=False)
    expected, magnitude = _oracle(a, b, trans_a, trans_b)
    assert_close(_C.sgemm(a, b, trans_a, trans_b), expected, magnitude, k, "sgemm")


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_sgemm_integer_fill_is_exact(isa, threads, trans_a, trans_b):
    a, b = _operands(np.random.default_rng(1), 130, 250, 300, trans_a, trans_b, integer=True)
    expected, _ = _oracle(a, b, trans_a, trans_b)
    assert_exact(_C.sgemm(a, b, trans_a, trans_b), expected, "sgemm")
    assert_exact(_C.sgemm(a, b, trans_a, trans_b, reference=True), expected, "sgemm_reference")


# Full-height tiles whose column strip has at most 8 columns (AVX-512: the
# rows in the lanes, even and odd k summed apart): 14x14 planes (196 = 6*32 + 4),
# LeNet's 100 = 3*32 + 4, odd and even depths, several depth blocks.
@pytest.mark.parametrize("m,n,k", [(70, 196, 255), (98, 100, 150), (71, 40, 513), (42, 8, 7), (42, 33, 1)])
def test_sgemm_narrow_column_edge_is_exact(isa, threads, m, n, k):
    if isa != "scalar":
        assert _C.sgemm_implementation(m, n, k, False, False) == f"blocked_{isa}"
    a, b = _operands(np.random.default_rng(7), m, n, k, False, False, integer=True)
    assert_exact(_C.sgemm(a, b), _oracle(a, b, False, False)[0], "sgemm")
    out = np.random.default_rng(8).integers(-8, 9, size=(m, n)).astype(np.float32)
    expected = 2.0 * _oracle(a, b, False, False)[0] - 0.5 * out.astype(np.float64)
    _C.sgemm(a, b, alpha=2.0, beta=-0.5, out=out)
    assert_exact(out, expected, "sgemm alpha/beta")


def test_sgemm_empty_and_zero_depth():
    assert _C.sgemm(np.zeros((0, 3), np.float32), np.zeros((3, 4), np.float32)).shape == (0, 4)
    out = _C.sgemm(np.zeros((2, 0), np.float32), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(out, np.zeros((2, 4)))


def test_sgemm_rejects_mismatched_inner_dimension():
    with pytest.raises(ValueError, match="inner dimensions"):
        _C.sgemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))


# Shapes of the threaded partition: small M with long N (im2col forward), long M
# with tiny N (linear, input gradient), and a long depth (weight gradient).
@pytest.mark.parametrize("m,n,k", [(6, 3000, 25), (20, 1031, 70), (500, 10, 300), (37, 45, 1100), (1, 1, 700)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_sgemm_partition_shapes_are_exact(isa, threads, m, n, k, trans_a, trans_b):
    a, b = _operands(np.random.default_rng(2), m, n, k, trans_a, trans_b, integer=True)
    expected, _ = _oracle(a, b, trans_a, trans_b)
    assert_exact(_C.sgemm(a, b, trans_a, trans_b), expected, "sgemm")


# A deep K narrows the shared B panel (all of K within the kernel's KC x NC
# budget): N = 2000 then takes 3 to 6 panels under every ISA, so both packing
# buffers are reused while other threads may still be on the previous panel.
# 8 threads on this machine leave some threads (and some column ranges) empty.
@pytest.mark.parametrize("num_threads", [1, 2, 3, 8])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_sgemm_many_b_panels_are_exact(isa, num_threads, trans_a, trans_b):
    a, b = _operands(np.random.default_rng(7), 30, 2000, 1500, trans_a, trans_b, integer=True)
    previous = cnnkit.get_num_threads()
    cnnkit.set_num_threads(num_threads)
    try:
        result = _C.sgemm(a, b, trans_a, trans_b)
    finally:
        cnnkit.set_num_threads(previous)
    assert_exact(result, _oracle(a, b, trans_a, trans_b)[0], "sgemm")


# Linear 3136->1024 at batches 48 and 64: op(B) of 3.2M floats, where AVX-512
# keeps the small-M path up to 64 rows (forward with trans_b, input gradient without).
@pytest.mark.parametrize("m", [48, 64])
@pytest.mark.parametrize("n,k,trans_b", [(1024, 3136, True), (3136, 1024, False)])
def test_small_m_large_b_is_exact(isa, threads, m, n, k, trans_b):
    a, b = _operands(np.random.default_rng(12), m, n, k, False, trans_b, integer=True)
    if isa == "avx512":
        assert _C.sgemm_implementation(m, n, k, False, trans_b) == "small_m_avx512"
    assert_exact(_C.sgemm(a, b, False, trans_b), _oracle(a, b, False, trans_b)[0], "sgemm")


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.0, 0.5), (-0.5, -2.0), (1.0, 0.0)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_sgemm_alpha_beta_into_strided_out(isa, threads, alpha, beta, trans_a, trans_b):
    # K > 256 runs several depth blocks, each adding onto C; out is a column
    # slice of a wider array (ldc > N) whose other columns must stay untouched.
    m, n, k = 47, 70, 530
    rng = np.random.default_rng(3)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, integer=True)
    wide = rng.integers(-8, 9, size=(m, n + 9)).astype(np.float32)
    before = wide.copy()
    out = wide[:, 4 : 4 + n]
    product, _ = _oracle(a, b, trans_a, trans_b)
    expected = alpha * product + beta * before[:, 4 : 4 + n].astype(np.float64)
    result = _C.sgemm(a, b, trans_a, trans_b, alpha=alpha, beta=beta, out=out)
    assert np.shares_memory(result, wide)
    assert_exact(out, expected, "sgemm")
    np.testing.assert_array_equal(wide[:, :4], before[:, :4])
    np.testing.assert_array_equal(wide[:, 4 + n :], before[:, 4 + n :])


def test_sgemm_beta_zero_ignores_nan_in_out(isa):
    a, b = _operands(np.random.default_rng(4), 30, 40, 20, False, False, integer=True)
    out = np.full((30, 40), np.nan, np.float32)
    _C.sgemm(a, b, beta=0.0, out=out)
    assert_exact(out, _oracle(a, b, False, False)[0], "sgemm")


def test_sgemm_nan_and_inf_propagate(isa):
    a, b = _operands(np.random.default_rng(5), 20, 40, 30, False, False, integer=False)
    a[3, 7] = np.nan
    b[5, 33] = np.inf
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(_C.sgemm(a, b)), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(_C.sgemm(a, b)), np.isinf(expected))


@pytest.mark.parametrize(
    "out,error,match",
    [
        (np.zeros((3, 5)), TypeError, "float32"),
        ([[0.0] * 5] * 3, TypeError, "float32"),
        (np.zeros((2, 5), np.float32), ValueError, "shape"),
        (np.zeros((3, 5, 1), np.float32), ValueError, "dimensions"),
        (np.zeros((3, 5), np.float32)[:, ::-1], ValueError, "contiguous rows"),
        (np.zeros((5, 3), np.float32).T, ValueError, "contiguous rows"),
        (np.zeros((3, 5), np.float32)[::-1], ValueError, "overlap"),
    ],
)
def test_sgemm_rejects_bad_out(out, error, match):
    with pytest.raises(error, match=match):
        _C.sgemm(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32), out=out)


def test_sgemm_rejects_read_only_out():
    out = np.zeros((3, 5), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _C.sgemm(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32), out=out)


@pytest.mark.parametrize("m,n,k", [(7, 40, 3000), (14, 33, 100), (500, 33, 100)])
def test_sgemm_odd_thread_count_is_exact(isa, m, n, k):
    # Three threads cannot split one tile row or column evenly: the partition
    # must fall back to fewer rectangles without losing any of C.
    a, b = _operands(np.random.default_rng(6), m, n, k, False, False, integer=True)
    previous = cnnkit.get_num_threads()
    cnnkit.set_num_threads(3)
    try:
        result = _C.sgemm(a, b)
    finally:
        cnnkit.set_num_threads(previous)
    assert_exact(result, _oracle(a, b, False, False)[0], "sgemm")


# ---------------------------------------------------------------------------
# small-M path (linear layers at small batch): unpacked dot products for
# trans_b, streamed rows of B otherwise
# ---------------------------------------------------------------------------

def _takes_small_m(isa, m, n, k, trans_a, trans_b):
    """Whether sgemm sends a product to the small-M path (csrc/cpu/gemm/dispatch.cpp)."""
    if isa == "avx512":
        if m <= 8:
            return True
        if trans_a or (trans_b and k < 256):
            return False
        return m <= 32 or (m <= 64 and n * k >= 3e6)
    if isa == "avx2":
        if m <= 3:
            return True
        return not trans_a and ((m <= 8 and (not trans_b or k >= 256)) or (m <= 16 and not trans_b))
    return False


# Around the 8- and 16-float vectors, the 8-column dot groups, the 64/128-column
# axpy blocks and the 256-deep axpy passes.
_vector_dims = st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 33, 63, 64, 65, 127, 129, 257])


def test_small_m_path_is_selected(isa):
    for m, n, k, trans_a, trans_b in itertools.product((1, 2, 3, 4, 8, 9, 12, 16, 17, 32, 33, 64, 65), (100, 12000),
                                                       (100, 256), (False, True), (False, True)):
        name = _C.sgemm_implementation(m, n, k, trans_a, trans_b)
        assert name == (f"small_m_{isa}" if _takes_small_m(isa, m, n, k, trans_a, trans_b) else f"blocked_{isa}")
    # Linear 3136->1024 forward at batches 16 and 64: the small-M path only with AVX-512.
    for m in (16, 64):
        assert _C.sgemm_implementation(m, 1024, 3136, False, True) == (
            "small_m_avx512" if isa == "avx512" else f"blocked_{isa}")


@given(m=st.integers(1, 40), n=_vector_dims, k=_vector_dims, trans_a=st.booleans(), trans_b=st.booleans(), seed=st.integers(0, 2**31))
def test_small_m_matches_oracle(isa, threads, m, n, k, trans_a, trans_b, seed):
    a, b = _operands(np.random.default_rng(seed), m, n, k, trans_a, trans_b, integer=False)
    expected, magnitude = _oracle(a, b, trans_a, trans_b)
    assert_close(_C.sgemm(a, b, trans_a, trans_b), expected, magnitude, k, "sgemm")


# Linear shapes at batch 1..32: forward (trans_b, N = out), input gradient
# (N = in, K = out), a 10-class classifier, and N*K large enough (> 1 MFLOP)
# that the columns are split over threads; K = 530 runs three axpy passes, K = 2100 three
# dot passes (of 704, 704 and 692).
@pytest.mark.parametrize("n,k", [(1024, 400), (10, 84), (84, 10), (700, 530), (129, 1), (40, 2100)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_small_m_linear_shapes_are_exact(isa, threads, n, k, trans_a, trans_b):
    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 4, 5, 8, 13, 16, 31, 32):
        a, b = _operands(rng, m, n, k, trans_a, trans_b, integer=True)
        assert_exact(_C.sgemm(a, b, trans_a, trans_b), _oracle(a, b, trans_a, trans_b)[0], "sgemm")


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.0, 0.5), (-0.5, -2.0), (1.0, 0.0)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m", [1, 3, 6])
@pytest.mark.parametrize("k", [530, 2100])
def test_small_m_alpha_beta_into_strided_out(isa, threads, alpha, beta, trans_a, trans_b, m, k):
    # out is a column slice of a wider array (ldc > N); the columns beside it
    # must stay untouched, including past a masked right edge (N = 70).
    n = 70
    rng = np.random.default_rng(8)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, integer=True)
    wide = rng.integers(-8, 9, size=(m, n + 9)).astype(np.float32)
    before = wide.copy()
    out = wide[:, 4 : 4 + n]
    expected = alpha * _oracle(a, b, trans_a, trans_b)[0] + beta * before[:, 4 : 4 + n].astype(np.float64)
    _C.sgemm(a, b, trans_a, trans_b, alpha=alpha, beta=beta, out=out)
    assert_exact(out, expected, "sgemm")
    np.testing.assert_array_equal(wide[:, :4], before[:, :4])
    np.testing.assert_array_equal(wide[:, 4 + n :], before[:, 4 + n :])


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("k", [19, 1100])
def test_small_m_beta_zero_ignores_nan_and_alpha_zero_scales(isa, trans_b, k):
    a, b = _operands(np.random.default_rng(9), 2, 37, k, False, trans_b, integer=True)
    out = np.full((2, 37), np.nan, np.float32)
    _C.sgemm(a, b, False, trans_b, beta=0.0, out=out)
    assert_exact(out, _oracle(a, b, False, trans_b)[0], "sgemm")
    _C.sgemm(a, b, False, trans_b, alpha=0.0, beta=-1.0, out=out)
    assert_exact(out, -_oracle(a, b, False, trans_b)[0], "sgemm")


@pytest.mark.parametrize("trans_b", [False, True])
def test_small_m_nan_and_inf_propagate(isa, trans_b):
    a, b = _operands(np.random.default_rng(10), 3, 40, 30, False, trans_b, integer=False)
    a[1, 7] = np.nan
    b[(33, 5) if trans_b else (5, 33)] = np.inf
    expected = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    result = _C.sgemm(a, b, False, trans_b)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))


@pytest.mark.parametrize("trans_b", [False, True])
def test_small_m_result_does_not_depend_on_thread_count(isa, trans_b):
    # Each element is summed in one order whatever the column split.
    a, b = _operands(np.random.default_rng(11), 2, 1030, 700, False, trans_b, integer=False)
    previous = cnnkit.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3):
            cnnkit.set_num_threads(count)
            results.append(_C.sgemm(a, b, False, trans_b))
    finally:
        cnnkit.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


# ---------------------------------------------------------------------------
# pre-packed A (PackedMatrix + sgemm_packed): a layer's weights packed once
# by the blocked kernel the ISA cap selects, multiplied against many op(B)
# ---------------------------------------------------------------------------

@given(m=_dims, n=_dims, k=_dims, trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, -0.5]), seed=st.integers(0, 2**31))
def test_sgemm_packed_matches_oracle(isa, threads, m, n, k, trans_a, trans_b, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, integer=False)
    packed = _C.PackedMatrix(a, trans_a)
    assert (packed.rows, packed.depth) == (m, k)
    assert packed.kernel == f"blocked_{isa}" and packed.usable()
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = c0.copy()
    product, magnitude = _oracle(a, b, trans_a, trans_b)
    expected = alpha * product + beta * c0.astype(np.float64)
    bound = abs(alpha) * magnitude + abs(beta) * np.abs(c0.astype(np.float64))
    assert _C.sgemm_packed(packed, b, trans_b, alpha=alpha, beta=beta, out=out) is out
    assert_close(out, expected, bound, k + 1, "sgemm_packed")
    assert_close(_C.sgemm_packed(packed, b, trans_b), product, magnitude, k, "sgemm_packed new array")


# Weight-shaped products: many rows against the few columns of a batch-1 conv
# on a small plane (N = 1, 4, 9, 16) or a small batch, K over several depth
# blocks; plus rows-left counts of every tile height.
@pytest.mark.parametrize("m,n,k", [(512, 4, 1200), (71, 16, 513), (29, 9, 300), (100, 1, 257), (45, 64, 70),
                                   (14, 33, 256), (13, 200, 31)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True), (False, True)])
def test_sgemm_packed_integer_fill_is_exact(isa, threads, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * n + k)
    a, b = _operands(rng, m, n, k, trans_a, trans_b, integer=True)
    packed = _C.PackedMatrix(a, trans_a)
    expected = _oracle(a, b, trans_a, trans_b)[0]
    assert_exact(_C.sgemm_packed(packed, b, trans_b), expected, "sgemm_packed")
    # The same packed copy again, into a column slice of a wider array with beta.
    wide = rng.integers(-8, 9, size=(m, n + 5)).astype(np.float32)
    before = wide.copy()
    _C.sgemm_packed(packed, b, trans_b, alpha=2.0, beta=-1.0, out=wide[:, 2 : 2 + n])
    assert_exact(wide[:, 2 : 2 + n], 2.0 * expected - before[:, 2 : 2 + n], "sgemm_packed alpha/beta")
    np.testing.assert_array_equal(wide[:, :2], before[:, :2])
    np.testing.assert_array_equal(wide[:, 2 + n :], before[:, 2 + n :])


def test_sgemm_packed_layout_does_not_depend_on_the_thread_count(isa):
    a, b = _operands(np.random.default_rng(9), 300, 50, 700, False, False, integer=True)
    previous = cnnkit.get_num_threads()
    try:
        cnnkit.set_num_threads(1)
        packed = _C.PackedMatrix(a)
        for n_threads in (2, 3, 1):
            cnnkit.set_num_threads(n_threads)
            assert_exact(_C.sgemm_packed(packed, b), _oracle(a, b, False, False)[0], "sgemm_packed")
    finally:
        cnnkit.set_num_threads(previous)


def test_sgemm_packed_refuses_a_copy_packed_under_another_isa_cap():
    isas = supported_isas()
    if len(isas) < 2:
        pytest.skip("one ISA only: the cap cannot change the kernel")
    a, b = _operands(np.random.default_rng(10), 20, 8, 30, False, False, integer=True)
    previous = cnnkit.get_max_isa()
    try:
        cnnkit.set_max_isa(isas[-1])
        packed = _C.PackedMatrix(a)
        cnnkit.set_max_isa(isas[0])
        assert not packed.usable()
        with pytest.raises(ValueError, match=f"packed for blocked_{isas[-1]}.*pack it again"):
            _C.sgemm_packed(packed, b)
        cnnkit.set_max_isa(isas[-1])
        assert packed.usable()
        assert_exact(_C.sgemm_packed(packed, b), _oracle(a, b, False, False)[0], "sgemm_packed")
    finally:
        cnnkit.set_max_isa(previous)


def test_sgemm_packed_empty_and_zero_depth():
    assert _C.sgemm_packed(_C.PackedMatrix(np.zeros((0, 3), np.float32)), np.zeros((3, 4), np.float32)).shape == (0, 4)
    packed = _C.PackedMatrix(np.zeros((2, 0), np.float32))
    np.testing.assert_array_equal(_C.sgemm_packed(packed, np.zeros((0, 4), np.float32)), np.zeros((2, 4)))
    out = np.full((2, 4), 3.0, np.float32)
    _C.sgemm_packed(packed, np.zeros((0, 4), np.float32), beta=0.5, out=out)
    np.testing.assert_array_equal(out, np.full((2, 4), 1.5))


def test_sgemm_packed_rejects_bad_operands():
    packed = _C.PackedMatrix(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="inner dimensions"):
        _C.sgemm_packed(packed, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="b must have 2 dimensions"):
        _C.sgemm_packed(packed, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="shape"):
        _C.sgemm_packed(packed, np.ones((4, 5), np.float32), out=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="a must have 2 dimensions"):
        _C.PackedMatrix(np.ones((2, 3, 4), np.float32))
    with pytest.raises(TypeError):
        _C.sgemm_packed(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32))
