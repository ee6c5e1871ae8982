"""CUDA dropout / dropout2d: the Philox4x32-10 generator against its published known answers and a
NumPy re-implementation, masks and outputs exact, the keep rate statistically, GPU masks equal to
the emulator's bit for bit (skipped without a device), and the key drawn from cnnkit's seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cuda_support import built, emulate, gpu, on_gpu, on_host, poisoned_host, to_device, to_host

MASK32 = np.uint64(0xFFFFFFFF)


def philox_numpy(counters, k0, k1):
    """Philox4x32-10 on an (n, 4) uint64 array of 32-bit counters, written from the paper."""
    c = counters.astype(np.uint64)
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & MASK32, (k1 + np.uint64(0xBB67AE85)) & MASK32
        p0, p1 = np.uint64(0xD2511F53) * c[:, 0], np.uint64(0xCD9E8D57) * c[:, 2]
        c = np.stack([((p1 >> np.uint64(32)) ^ c[:, 1] ^ k0) & MASK32, p1 & MASK32,
                      ((p0 >> np.uint64(32)) ^ c[:, 3] ^ k1) & MASK32, p0 & MASK32], axis=1)
    return c


def expected_mask(units, p, k0, k1):
    """Unit u kept when word u % 4 of Philox((u // 4, 0, 0, 0)) gives a uniform >= p."""
    u = np.arange(units, dtype=np.uint64)
    blocks = np.zeros((units, 4), np.uint64)
    blocks[:, 0] = u // np.uint64(4)
    bits = philox_numpy(blocks, k0, k1)[np.arange(units), (u % np.uint64(4)).astype(np.int64)]
    uniform = (bits >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)
    scale = np.float32(1.0 / (1.0 - p)) if p < 1 else np.float32(0)
    return np.where(uniform >= np.float32(p), scale, np.float32(0)).astype(np.float32)


@built
@pytest.mark.parametrize("counter,key,answer", [
    ([0, 0, 0, 0], (0, 0), [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, (0xFFFFFFFF, 0xFFFFFFFF), [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], (0xA4093822, 0x299F31D0),
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
])
def test_philox_known_answers(counter, key, answer):
    """Random123's known-answer vectors for philox4x32_10, and the NumPy version agrees."""
    assert list(emulate.philox4x32_10(counter, *key)) == answer
    assert list(philox_numpy(np.array([counter], np.uint64), *key)[0]) == answer


def run_dropout(on, x, p, channelwise, key):
    units = x.shape[0] * x.shape[1] if channelwise else x.size
    out, mask = on["poison"](x.shape), on["poison"](units)
    on["run"]("dropout", on["array"](x), out, mask, channelwise, p, *key)
    return on["back"](out), on["back"](mask)


def check_dropout(on, shape, p, channelwise, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, shape).astype(np.float32)
    key = tuple(int(k) for k in rng.integers(0, 2**32, size=2))
    out, mask = run_dropout(on, x, p, channelwise, key)
    units = x.shape[0] * x.shape[1] if channelwise else x.size
    want = expected_mask(units, p, *key)
    np.testing.assert_array_equal(mask, want)
    per_element = np.repeat(want, x.size // units if units else 0).reshape(x.shape)
    np.testing.assert_array_equal(out, x * per_element)  # one float32 product per element
    g = rng.integers(-8, 9, shape).astype(np.float32)
    dx = on["poison"](x.shape)
    on["run"]("dropout_backward", on["array"](g), on["array"](mask), dx)
    np.testing.assert_array_equal(on["back"](dx), g * per_element)


@built
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
       channelwise=st.booleans(), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_emulated_dropout_masks_and_outputs_are_exact(shape, p, channelwise, seed):
    check_dropout(on_host(), tuple(shape), p, channelwise, seed)


@built
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("channelwise", [False, True])
def test_emulated_keep_rate(p, channelwise):
    """The kept fraction within 5 standard deviations of 1 - p, and the two halves of the units
    independent of each other (no repeating stream)."""
    x = np.ones((400, 500, 1) if channelwise else (200_000,), np.float32)
    _, mask = run_dropout(on_host(), x, p, channelwise, (12345, 678))
    kept = mask != 0
    n = kept.size
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    first, second = kept[: n // 2], kept[n // 2:]
    assert not np.array_equal(first, second)
    agreement = (first == second).mean()
    expected = p * p + (1 - p) * (1 - p)
    assert abs(agreement - expected) < 5 * np.sqrt(expected * (1 - expected) / (n // 2))


@built
def test_dropout_key_comes_from_cnnkit_seed_and_only_when_random():
    from cnnkit.cuda.ops_dropout import _key

    cnnkit.manual_seed(7)
    first = _key(0.5, True, None)
    cnnkit.manual_seed(7)
    assert _key(0.5, True, None) == first
    assert _key(0.5, True, None) != first  # the generator moved on
    state = cnnkit._rng.default_generator().bit_generator.state
    assert _key(0.5, False, None) == (0, 0) and _key(0.0, True, None) == (0, 0) and _key(1.0, True, None) == (0, 0)
    assert cnnkit._rng.default_generator().bit_generator.state == state
    assert _key(0.5, True, np.random.default_rng(3)) == _key(0.5, True, np.random.default_rng(3))


@built
def test_emulated_dropout_checks_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="p must be in"):
        emulate.dropout(x, poisoned_host(x.shape), None, False, 1.5, 0, 0)
    with pytest.raises(ValueError, match="mask has 5 elements, expected 6"):
        emulate.dropout(x, poisoned_host(x.shape), poisoned_host(5), False, 0.5, 0, 0)
    with pytest.raises(ValueError, match="does not divide"):
        emulate.dropout_backward(x, np.ones(4, np.float32), poisoned_host(x.shape))


@gpu
@given(shape=st.lists(st.integers(1, 40), min_size=2, max_size=4), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
       channelwise=st.booleans(), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_gpu_dropout_masks_equal_the_emulator(shape, p, channelwise, seed):
    check_dropout(on_gpu(), tuple(shape), p, channelwise, seed)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(run_dropout(on_gpu(), x, p, channelwise, (seed, 99))[1],
                                  run_dropout(on_host(), x, p, channelwise, (seed, 99))[1])


@gpu
def test_gpu_public_dropout_repeats_with_the_seed():
    from cnnkit.cuda import ops_dropout

    x = to_device(np.ones((4, 3, 5, 5), np.float32))
    cnnkit.manual_seed(1)
    a, mask_a = ops_dropout.dropout2d(x, 0.5, return_mask=True)
    cnnkit.manual_seed(1)
    b, mask_b = ops_dropout.dropout2d(x, 0.5, return_mask=True)
    np.testing.assert_array_equal(to_host(a), to_host(b))
    assert to_host(mask_a).shape == (4, 3, 1, 1)
    np.testing.assert_array_equal(to_host(ops_dropout.dropout2d_backward(x, mask_a)), to_host(a))
