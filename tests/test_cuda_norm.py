"""CUDA batch norm (training and eval, running-stat update, both reduction forms) and local
response norm against the float64 oracle: emulated on the host (here) and on a GPU (skipped
without one), outputs poisoned with NaN."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import reference as R
from cuda_support import built, emulate, gpu, on_gpu, on_host, poisoned_host, to_device, to_host
from test_batch_norm import _backward_magnitudes, _channel_rows, _magnitudes, _per_channel, bn_cases
from test_composite import _numeric_grad
from tolerance import assert_close

# Built without CUDA (no nvcc), there is no cnnkit._cuda to test.
_cuda = pytest.importorskip("cnnkit._cuda")


def optional(on, a):
    return None if a is None else on["array"](a)


def check_batch_norm(on, case, training, chunks):
    x, w, b, rm, rv, rng = case
    eps, momentum = 1e-5, 0.1
    rm_run, rv_run = on["array"](rm.copy()), on["array"](rv.copy())
    out = on["poison"](x.shape)
    scratch = on["poison"](_cuda.batch_norm_scratch(x.shape[1], chunks), np.float64)
    on["run"]("batch_norm", on["array"](x), rm_run, rv_run, optional(on, w), optional(on, b), out, scratch, training,
              momentum, eps, chunks)
    expected, new_mean, new_var = R.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    rows = _channel_rows(x)
    mean, var = (rows.mean(1), rows.var(1)) if training else (rm.astype(np.float64), rv.astype(np.float64))
    K = _per_channel(x)
    assert_close(on["back"](out), expected, _magnitudes(x, w, b, mean, var, eps)[0], K, "cuda batch_norm")
    assert_close(on["back"](rm_run), new_mean, np.abs(rm) + np.abs(mean), K, "cuda batch_norm running_mean")
    assert_close(on["back"](rv_run), new_var, np.abs(rv) + var * K / max(K - 1, 1), K, "cuda batch_norm running_var")

    dy = rng.standard_normal(x.shape).astype(np.float32)
    c = x.shape[1]
    dx = on["poison"](x.shape)
    dw, db = (None, None) if w is None else (on["poison"](c), on["poison"](c))
    scratch = on["poison"](_cuda.batch_norm_scratch(c, chunks), np.float64)
    on["run"]("batch_norm_backward", on["array"](dy), on["array"](x), None if training else on["array"](rm),
              None if training else on["array"](rv), optional(on, w), dx, dw, db, scratch, training, eps, chunks)
    expected = R.batch_norm_backward(dy, x, rm, rv, w, training, eps)
    dx_mag, dw_mag, db_mag, K = _backward_magnitudes(dy, x, rm, rv, w, training, eps)
    assert_close(on["back"](dx), expected[0], dx_mag, K, "cuda batch_norm_backward dx")
    if w is not None:
        assert_close(on["back"](dw), expected[1], dw_mag, K, "cuda batch_norm_backward dw")
        assert_close(on["back"](db), expected[2], db_mag, K, "cuda batch_norm_backward db")


@st.composite
def long_channels(draw):
    """Channels longer than a block's 256 threads."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    c = draw(st.integers(1, 3))
    x = (rng.standard_normal((draw(st.integers(2, 3)), c, draw(st.sampled_from([130, 257, 300])))) * 2 +
         draw(st.sampled_from([0.0, 1e4])))
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    return x.astype(np.float32), w, b, rng.standard_normal(c).astype(np.float32), \
        (rng.random(c) + 0.5).astype(np.float32), rng


@built
@pytest.mark.parametrize("chunks", [0, 1, 3])
@given(case=st.one_of(bn_cases(), long_channels()), training=st.booleans())
@settings(max_examples=40, deadline=None)
def test_emulated_batch_norm_matches_oracle(chunks, case, training):
    check_batch_norm(on_host(), case, training, chunks)


@built
@pytest.mark.parametrize("mean", [1e4, 1e7])
def test_emulated_batch_norm_large_mean_is_accurate(mean):
    rng = np.random.default_rng(5)
    x = (mean + rng.integers(-4, 5, size=(16, 4, 8, 8))).astype(np.float32)
    case = (x, None, None, np.zeros(4, np.float32), np.ones(4, np.float32), rng)
    check_batch_norm(on_host(), case, True, 4)


@built
def test_emulated_batch_norm_checks_arguments_and_empty_batches():
    x = np.zeros((1, 3), np.float32)
    scratch = poisoned_host(_cuda.batch_norm_scratch(3, 2), np.float64)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        emulate.batch_norm(x, None, None, None, None, poisoned_host(x.shape), scratch, True, 0.1, 1e-5, 2)
    with pytest.raises(ValueError, match="required when training=False"):
        emulate.batch_norm(x, None, None, None, None, poisoned_host(x.shape), scratch, False, 0.1, 1e-5, 2)
    with pytest.raises(ValueError, match="weight has 2 elements, expected 3"):
        emulate.batch_norm(np.zeros((2, 3), np.float32), None, None, np.ones(2, np.float32), None,
                           poisoned_host((2, 3)), scratch, True, 0.1, 1e-5, 2)
    with pytest.raises(ValueError, match="scratch has 30 elements, expected 18"):
        emulate.batch_norm(np.zeros((2, 3), np.float32), None, None, None, None, poisoned_host((2, 3)),
                           poisoned_host(30, np.float64), True, 0.1, 1e-5, 1)
    empty = np.zeros((0, 3, 2), np.float32)
    rm = np.full(3, 2.0, np.float32)
    emulate.batch_norm(empty, rm, rm.copy(), None, None, poisoned_host(empty.shape), scratch, True, 0.1, 1e-5, 2)
    np.testing.assert_array_equal(rm, 2.0)  # an empty batch leaves the running statistics alone
    for chunks in (0, 2):
        dw, db = poisoned_host(3), poisoned_host(3)
        emulate.batch_norm_backward(empty, empty, None, None, np.ones(3, np.float32), poisoned_host(empty.shape), dw,
                                    db, poisoned_host(_cuda.batch_norm_scratch(3, chunks), np.float64), True, 1e-5,
                                    chunks)
        np.testing.assert_array_equal(dw, 0)
        np.testing.assert_array_equal(db, 0)


def check_lrn(on, size, c, seed, alpha, beta, k):
    x = np.random.default_rng(seed).standard_normal((2, c, 3, 2)).astype(np.float32)
    y = on["poison"](x.shape)
    on["run"]("local_response_norm", on["array"](x), y, size, alpha, beta, k)
    expected = R.local_response_norm(x, size, alpha, beta, k)
    assert_close(on["back"](y), expected, np.abs(expected), size, "cuda local_response_norm")
    g = np.random.default_rng(seed + 1).standard_normal(x.shape).astype(np.float32)
    dx = on["poison"](x.shape)
    on["run"]("local_response_norm_backward", on["array"](g), on["array"](x), dx, size, alpha, beta, k)
    numeric = _numeric_grad(lambda v: R.local_response_norm(v, size, alpha, beta, k), x, g.astype(np.float64))
    np.testing.assert_allclose(on["back"](dx), numeric, rtol=1e-4, atol=1e-5)


LRN_ARGS = dict(size=st.integers(1, 6), c=st.integers(1, 7), seed=st.integers(0, 2**31), alpha=st.floats(1e-4, 1.0),
                beta=st.floats(0.1, 1.0), k=st.floats(0.5, 2.0))


@built
@given(**LRN_ARGS)
@settings(max_examples=40, deadline=None)
def test_emulated_local_response_norm_matches_oracle(size, c, seed, alpha, beta, k):
    check_lrn(on_host(), size, c, seed, alpha, beta, k)


@gpu
@pytest.mark.parametrize("chunks", [0, 1, 3])
@given(case=st.one_of(bn_cases(), long_channels()), training=st.booleans())
@settings(max_examples=20, deadline=None)
def test_gpu_batch_norm_matches_oracle(chunks, case, training):
    check_batch_norm(on_gpu(), case, training, chunks)


@gpu
@given(**LRN_ARGS)
@settings(max_examples=20, deadline=None)
def test_gpu_local_response_norm_matches_oracle(size, c, seed, alpha, beta, k):
    check_lrn(on_gpu(), size, c, seed, alpha, beta, k)


@gpu
def test_gpu_public_batch_norm_updates_device_running_stats():
    from cnnkit import functional as F
    from cnnkit.cuda import ops_norm

    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal(3).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    dev_rm, dev_rv = to_device(rm), to_device(rv)
    out = ops_norm.batch_norm(to_device(x), dev_rm, dev_rv, to_device(w), None, True)
    np.testing.assert_allclose(to_host(out), F.batch_norm(x, rm, rv, w, None, True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_host(dev_rm), rm, rtol=1e-6)
    np.testing.assert_allclose(to_host(dev_rv), rv, rtol=1e-6)
    dx, dw, db = ops_norm.batch_norm_backward(to_device(x), to_device(x), None, None, to_device(w))
    ref = F.batch_norm_backward(x, x, None, None, w)
    for got, want in zip((dx, dw, db), ref):
        np.testing.assert_allclose(to_host(got), want, rtol=1e-4, atol=1e-4)
