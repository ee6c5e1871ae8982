"""Dropout and dropout2d on the native counter-based (Philox4x32-10) masks: the masks against an
independent NumPy Philox, the outputs exactly, thread counts and ISAs, seeds, in-place and errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _C
from cnnkit import functional as F
from tolerance import assert_exact

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Philox4x32-10 on uint64 arrays holding 32-bit words: counter (4, n), key (2,)."""
    c = [np.asarray(w, np.uint64) & MASK32 for w in counter]
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(10):
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & MASK32, (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
             p0 & MASK32]
        k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
    return c


def oracle_uniform(key, units):
    """The uniform number of each unit: word u % 4 of block u / 4, top 24 bits."""
    blocks = np.arange((units + 3) // 4, dtype=np.uint64)
    zero = np.zeros_like(blocks)
    words = np.stack(philox4x32_10([blocks & MASK32, blocks >> np.uint64(32), zero, zero],
                                   (key & 0xFFFFFFFF, key >> 32)), axis=1).reshape(-1)[:units]
    return (words >> np.uint64(8)).astype(np.float64) * 2.0**-24


def test_oracle_matches_the_published_known_answers():
    # Random123's kat_vectors for philox4x32_10.
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, want in cases:
        got = philox4x32_10([np.array([w], np.uint64) for w in counter], key)
        assert [int(w[0]) for w in got] == list(want)


def expected_mask(key, units, p):
    return np.where(oracle_uniform(key, units) >= p, np.float32(1.0 / (1.0 - p)), np.float32(0.0))


# Sizes around the vector widths and the Philox block of 4, and one that threads split.
SIZES = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 70001]


@pytest.mark.parametrize("size", SIZES)
def test_mask_matches_philox_oracle_and_output_is_exact(isa, threads, size):
    rng = np.random.default_rng(size)
    x = rng.integers(-8, 9, size).astype(np.float32)
    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    for p in (0.1, 0.5, 0.9):
        y, mask = _C.dropout(x, p, key)
        np.testing.assert_array_equal(mask, expected_mask(key, size, p))
        assert_exact(y, x.astype(np.float64) * mask, "dropout")
        ref_y, ref_mask = _C.dropout(x, p, key, reference=True)
        np.testing.assert_array_equal(y, ref_y)
        np.testing.assert_array_equal(mask, ref_mask)


@given(n=st.integers(0, 5), c=st.integers(0, 19), h=st.integers(0, 9), w=st.integers(1, 17),
       p=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_dropout2d_drops_whole_planes(isa, n, c, h, w, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    y, mask = _C.dropout(x, p, key, channel=True)
    assert mask.shape == (n, c, 1, 1)
    np.testing.assert_array_equal(mask.reshape(-1), expected_mask(key, n * c, p))
    np.testing.assert_array_equal(y, x * mask)


def test_functional_masks_follow_the_generator_and_seed_not_threads():
    x = np.random.default_rng(0).standard_normal((64, 513)).astype(np.float32)
    runs = []
    for t in (1, 2):
        cnnkit.set_num_threads(t)
        cnnkit.manual_seed(7)
        runs.append(F.dropout(x, 0.3, return_mask=True))
        runs.append(F.dropout2d(x.reshape(64, 27, 19, 1), 0.3, generator=np.random.default_rng(3), return_mask=True))
    cnnkit.set_num_threads(2)
    for a, b in zip(runs[:2], runs[2:]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    key = int(np.random.default_rng(3).integers(0, 2**64, dtype=np.uint64))
    np.testing.assert_array_equal(runs[1][1].reshape(-1), expected_mask(key, 64 * 27, 0.3))
    cnnkit.manual_seed(8)
    assert not np.array_equal(F.dropout(x, 0.3), runs[0][0])


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.95])
def test_drop_fraction_and_scale(p):
    y = F.dropout(np.ones(200_000, np.float32), p, generator=np.random.default_rng(1))
    assert set(np.unique(y)) <= {0.0, np.float32(1.0 / (1.0 - p))}
    assert abs((y == 0).mean() - p) < 0.005


def test_nan_and_inf_propagate_like_torch_through_the_product():
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 16, np.float32)
    y, mask = F.dropout(x, 0.5, generator=np.random.default_rng(2), return_mask=True)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(y, x * mask)  # inf * 0 and NaN * 0 are NaN, as in torch
    assert np.isnan(y[(mask == 0) & ~np.isfinite(x)]).all() and (mask == 0).any()


def test_inplace_writes_into_the_input():
    x = np.random.default_rng(4).standard_normal((3, 5, 4, 4)).astype(np.float32)
    for fn in (F.dropout, F.dropout2d):
        mine = x.copy()
        y, mask = fn(mine, 0.4, inplace=True, generator=np.random.default_rng(5), return_mask=True)
        assert y is mine
        np.testing.assert_array_equal(mine, x * mask)
        with pytest.raises(TypeError, match="input"):
            fn(x.astype(np.float64), 0.4, inplace=True)
    mine = x.copy()
    assert F.dropout(mine, 0.4, training=False, inplace=True) is mine
    np.testing.assert_array_equal(mine, x)


def test_edge_probabilities_and_bad_arguments():
    x = np.ones((2, 3, 2, 2), np.float32)
    np.testing.assert_array_equal(F.dropout(x, 0.0), x)
    assert not F.dropout(x, 1.0).any() and not F.dropout2d(x, 1.0).any()
    np.testing.assert_array_equal(F.dropout2d(x, 0.7, training=False, return_mask=True)[1], np.ones((2, 3, 1, 1)))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="probability"):
            F.dropout(x, bad)
    with pytest.raises(TypeError, match="p"):
        F.dropout(x, "0.5")
    with pytest.raises(TypeError, match="generator"):
        F.dropout(x, 0.5, generator=np.random.RandomState(0))
    with pytest.raises(ValueError, match="p"):
        _C.dropout(x, 1.0, 0)
    with pytest.raises(ValueError, match="out"):
        _C.dropout(x, 0.5, 0, out=np.zeros(3, np.float32))


def test_dispatch_picks_the_widest_enabled_kernel(isa):
    want = {"scalar": "threaded", "avx2": "threaded_avx2", "avx512": "threaded_avx512"}[isa]
    assert _C.dropout_implementation() == want
