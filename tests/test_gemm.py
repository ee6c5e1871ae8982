"""The C++ SGEMM (used by im2col convolution and linear) against NumPy float64."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import _C
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


# Sizes straddle the register tiles (4x8, 6x16, 8x32) and the cache blocks (120, 256).
_dims = st.sampled_from([1, 2, 3, 5, 6, 7, 8, 15, 16, 17, 31, 32, 33, 97, 121, 257])


@given(m=_dims, n=_dims, k=_dims, trans_a=st.booleans(), trans_b=st.booleans(), seed=st.integers(0, 2**31))
def test_sgemm_matches_oracle(isa, m, n, k, trans_a, trans_b, seed):
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


def test_sgemm_empty_and_zero_depth():
    assert _C.sgemm(np.zeros((0, 3), np.float32), np.zeros((3, 4), np.float32)).shape == (0, 4)
    out = _C.sgemm(np.zeros((2, 0), np.float32), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(out, np.zeros((2, 4)))


def test_sgemm_rejects_mismatched_inner_dimension():
    with pytest.raises(ValueError, match="inner dimensions"):
        _C.sgemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
