"""CUDA max/avg/adaptive-average pooling against the float64 oracle: emulated on the host (here)
and on a GPU (skipped without one), outputs poisoned with NaN."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnkit import reference as R
from cuda_support import built, emulate, gpu, on_gpu, on_host, poisoned_host, to_device, to_host
from test_pool import _windows_per_input, pool_configs
from tolerance import assert_close, assert_exact

# Built without CUDA (no nvcc), there is no cnnkit._cuda to test.
_cuda = pytest.importorskip("cnnkit._cuda")


def geometry(cfg, dilation=True):
    return (cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"] if dilation else (1, 1),
            cfg["ceil_mode"])


def check_max(on, cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    x.reshape(-1)[rng.random(x.size) < 0.05] = np.nan
    kernel, stride, padding, dilation, ceil_mode = geometry(cfg)
    try:
        oh, ow = _cuda.pool2d_output_size(x.shape, kernel, stride, padding, dilation, ceil_mode)
    except ValueError as e:
        assume("only padding" not in str(e))
        raise
    out, idx = on["poison"](x.shape[:2] + (oh, ow)), on["poison"](x.shape[:2] + (oh, ow), np.int64)
    on["run"]("max_pool2d", on["array"](x), out, idx, kernel, stride, padding, dilation, ceil_mode)
    out, idx = on["back"](out), on["back"](idx)
    expected, expected_idx = R.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    assert_exact(out, expected, "cuda max_pool2d")  # selection never rounds; NaN positions match too
    np.testing.assert_array_equal(idx, expected_idx)

    g = rng.standard_normal(out.shape).astype(np.float32)
    grad = on["poison"](x.shape)
    on["run"]("max_pool2d_backward", on["array"](g), on["array"](idx), x.shape, grad, kernel, stride, padding,
              dilation, ceil_mode)
    assert_close(on["back"](grad), R.max_pool2d_backward(g, x.shape, expected_idx),
                 R.max_pool2d_backward(np.abs(g), x.shape, expected_idx), _windows_per_input(cfg),
                 "cuda max_pool2d_backward")


def check_avg(on, cfg, count_include_pad, divisor_override, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    kernel, stride, padding, _, ceil_mode = geometry(cfg, dilation=False)
    oh, ow = _cuda.pool2d_output_size(x.shape, kernel, stride, padding, (1, 1), ceil_mode)
    args = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                count_include_pad=count_include_pad, divisor_override=divisor_override)
    out = on["poison"](x.shape[:2] + (oh, ow))
    on["run"]("avg_pool2d", on["array"](x), out, kernel, stride, padding, ceil_mode, count_include_pad,
              divisor_override or 0)
    # abs: a negative divisor_override flips the sign of the magnitude too.
    assert_close(on["back"](out), R.avg_pool2d(x, **args), np.abs(R.avg_pool2d(np.abs(x), **args)),
                 kernel[0] * kernel[1], "cuda avg_pool2d")
    g = rng.standard_normal((x.shape[0], x.shape[1], oh, ow)).astype(np.float32)
    grad = on["poison"](x.shape)
    on["run"]("avg_pool2d_backward", on["array"](g), x.shape, grad, kernel, stride, padding, ceil_mode,
              count_include_pad, divisor_override or 0)
    assert_close(on["back"](grad), R.avg_pool2d_backward(g, x.shape, **args),
                 np.abs(R.avg_pool2d_backward(np.abs(g), x.shape, **args)), _windows_per_input(cfg),
                 "cuda avg_pool2d_backward")


@st.composite
def adaptive_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    return shape, (draw(st.integers(1, 10)), draw(st.integers(1, 10)))


def adaptive_transpose(g, shape, size):
    """The oracle's adjoint: adaptive pooling is linear, so grad[h, w] = <g, pool(e_hw)>."""
    grad = np.zeros(shape)
    for h in range(shape[2]):
        for w in range(shape[3]):
            e = np.zeros((1, 1) + shape[2:])
            e[0, 0, h, w] = 1.0
            grad[:, :, h, w] = (g * R.adaptive_avg_pool2d(e, *size)).sum(axis=(2, 3))
    return grad


def check_adaptive(on, shape, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    out = on["poison"](shape[:2] + size)
    on["run"]("adaptive_avg_pool2d", on["array"](x), out, size)
    window = -(-shape[2] // size[0] + 1) * -(-shape[3] // size[1] + 1)  # at most this many taps
    assert_close(on["back"](out), R.adaptive_avg_pool2d(x, *size), R.adaptive_avg_pool2d(np.abs(x), *size), window,
                 "cuda adaptive_avg_pool2d")
    g = rng.standard_normal(shape[:2] + size).astype(np.float32)
    grad = on["poison"](shape)
    on["run"]("adaptive_avg_pool2d_backward", on["array"](g), shape, grad, size)
    assert_close(on["back"](grad), adaptive_transpose(g, shape, size), adaptive_transpose(np.abs(g), shape, size),
                 4, "cuda adaptive_avg_pool2d_backward")


@built
@given(cfg=pool_configs(), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_emulated_max_pool_matches_oracle(cfg, seed):
    check_max(on_host(), cfg, seed)


@built
@given(cfg=pool_configs(dilation=False), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, 1, 3, -2]), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_emulated_avg_pool_matches_oracle(cfg, count_include_pad, divisor_override, seed):
    check_avg(on_host(), cfg, count_include_pad, divisor_override, seed)


@built
@given(case=adaptive_cases(), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_emulated_adaptive_avg_pool_matches_oracle(case, seed):
    check_adaptive(on_host(), *case, seed)


@built
def test_emulated_max_pool_backward_poisons_a_plane_with_a_foreign_index():
    x = np.arange(2 * 16, dtype=np.float32).reshape(1, 2, 4, 4)
    out, idx = poisoned_host((1, 2, 2, 2)), poisoned_host((1, 2, 2, 2), np.int64)
    emulate.max_pool2d(x, out, idx, (2, 2), (2, 2), (0, 0), (1, 1), False)
    idx[0, 1, 0, 0] = 15  # in the plane, but not in the first window
    grad = poisoned_host(x.shape)
    emulate.max_pool2d_backward(np.ones((1, 2, 2, 2), np.float32), idx, x.shape, grad, (2, 2), (2, 2), (0, 0),
                                (1, 1), False)
    assert np.isnan(grad[0, 1]).all() and not np.isnan(grad[0, 0]).any()


@built
def test_pool_arguments_are_checked_with_the_cpu_rules():
    with pytest.raises(ValueError, match="padding"):
        _cuda.pool2d_output_size((1, 1, 5, 5), (2, 2), (1, 1), (2, 2), (1, 1), False)
    with pytest.raises(ValueError, match="out has 3 elements"):
        emulate.avg_pool2d(np.zeros((1, 1, 4, 4), np.float32), poisoned_host(3), (2, 2), (2, 2), (0, 0), False,
                           True, 0)
    with pytest.raises(ValueError, match="indices must have grad_output's shape"):
        emulate.max_pool2d_backward(np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 4), np.int64), (1, 1, 4, 4),
                                    poisoned_host((1, 1, 4, 4)), (2, 2), (2, 2), (0, 0), (1, 1), False)


@gpu
@given(cfg=pool_configs(), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_gpu_max_pool_matches_oracle(cfg, seed):
    check_max(on_gpu(), cfg, seed)


@gpu
@given(cfg=pool_configs(dilation=False), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, 1, 3, -2]), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_gpu_avg_pool_matches_oracle(cfg, count_include_pad, divisor_override, seed):
    check_avg(on_gpu(), cfg, count_include_pad, divisor_override, seed)


@gpu
@given(case=adaptive_cases(), seed=st.integers(0, 2**31))
@settings(max_examples=20, deadline=None)
def test_gpu_adaptive_avg_pool_matches_oracle(case, seed):
    check_adaptive(on_gpu(), *case, seed)


@gpu
def test_gpu_public_pool_ops_match_the_cpu_ops():
    from cnnkit import functional as F
    from cnnkit.cuda import ops_pool

    x = np.random.default_rng(2).standard_normal((3, 7, 9)).astype(np.float32)  # unbatched CHW
    out, idx = ops_pool.max_pool2d(to_device(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(to_host(out), ref_out)
    np.testing.assert_array_equal(to_host(idx), ref_idx)
    g = np.ones(ref_out.shape, np.float32)
    np.testing.assert_array_equal(to_host(ops_pool.max_pool2d_backward(to_device(g), to_device(x), idx, 3, 2, 1,
                                                                       ceil_mode=True)),
                                  F.max_pool2d_backward(g, x, ref_idx, 3, 2, 1, ceil_mode=True))
    np.testing.assert_allclose(to_host(ops_pool.adaptive_avg_pool2d(to_device(x), (2, None))),
                               F.adaptive_avg_pool2d(x, (2, None)), rtol=1e-6)
