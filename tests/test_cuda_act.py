"""CUDA activations and PReLU against the float64 oracle: the kernels' per-element work run on the
host by the emulator (here), and the kernels themselves on a GPU (skipped without one); every
output starts as NaN so an element a kernel does not write fails."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import reference as R
from cuda_support import built, emulate, gpu, poisoned, poisoned_host, stream_of, to_device, to_host
from test_activations import CASES as BASIC_CASES
from test_activations import _magnitudes as basic_magnitudes
from test_new_activations import CASES as NEW_CASES
from test_new_activations import _magnitudes as new_magnitudes
from tolerance import assert_close

CASES = BASIC_CASES + NEW_CASES
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CASES]


def kernel_args(name, kw):
    """The kernel's (name, a, b) for a functional activation and its keyword arguments."""
    if name == "gelu":
        return ("gelu_tanh" if kw.get("approximate") == "tanh" else "gelu"), 0.0, 0.0
    a, b = {
        "leaky_relu": (kw.get("negative_slope", 0.01), 0.0),
        "elu": (kw.get("alpha", 1.0), 0.0),
        "softplus": (kw.get("beta", 1.0), kw.get("threshold", 20.0)),
        "hardtanh": (kw.get("min_val", -1.0), kw.get("max_val", 1.0)),
    }.get(name, (0.0, 0.0))
    return name, float(a), float(b)


def check(name, kw, x, g, y, dx):
    magnitudes = basic_magnitudes if (name, kw) in BASIC_CASES else new_magnitudes
    a_fwd, a_bwd = magnitudes(name, kw, x, g)
    floor = 2.0**-126  # subnormal results carry an absolute error (test_activations.SUBNORMAL_FLOOR)
    assert_close(y, getattr(R, name)(x, **kw), a_fwd + floor, 1, "cuda " + name)
    assert_close(dx, getattr(R, name + "_backward")(g, x, **kw), a_bwd + floor, 1, "cuda " + name + "_backward")


def values(seed, n, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[: min(3, n)] = np.array([0.0, -1.0, 6.0], np.float32)[: min(3, n)]  # kinks
    return x, rng.standard_normal(n).astype(np.float32)


# Sizes across the 256-thread block and the grid-stride boundary.
SIZES = st.one_of(st.integers(0, 40), st.sampled_from([255, 256, 257, 511, 513, 1000]))


@built
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
@given(n=SIZES, scale=st.sampled_from([0.5, 3.0, 12.0]), seed=st.integers(0, 2**31))
@settings(max_examples=25, deadline=None)
def test_emulated_activation_matches_oracle(name, kw, n, scale, seed):
    x, g = values(seed, n, scale)
    kernel, a, b = kernel_args(name, kw)
    y, dx = poisoned_host(n), poisoned_host(n)
    emulate.activation(kernel, x, y, a, b)
    emulate.activation_backward(kernel, g, x, dx, a, b)
    check(name, kw, x, g, y, dx)


@built
def test_emulated_activation_in_place_and_errors():
    x = np.linspace(-3, 3, 50, dtype=np.float32)
    expected = R.hardtanh(x)
    emulate.activation("hardtanh", x, x, -1.0, 1.0)
    np.testing.assert_array_equal(x, expected.astype(np.float32))
    with pytest.raises(ValueError, match="unknown activation"):
        emulate.activation("swish", x, x.copy(), 0.0, 0.0)
    with pytest.raises(ValueError, match="out has 49 elements"):
        emulate.activation("relu", x, x[:49].copy(), 0.0, 0.0)
    with pytest.raises(TypeError, match="input must have dtype <f4"):
        emulate.activation("relu", x.astype(np.float64), x.copy(), 0.0, 0.0)
    with pytest.raises(ValueError, match="out is read-only"):
        ro = x.copy()
        ro.flags.writeable = False
        emulate.activation("relu", x, ro, 0.0, 0.0)


def prelu_case(seed, shape, shared):
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, shape).astype(np.float32)  # integer fills: sums exact
    g = rng.integers(-3, 4, shape).astype(np.float32)
    w = rng.integers(-2, 3, (1,) if shared or len(shape) < 2 else (shape[1],)).astype(np.float32) / 4
    return x, g, w


@built
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), shared=st.booleans(), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_emulated_prelu_matches_oracle(shape, shared, seed):
    x, g, w = prelu_case(seed, shape, shared)
    y, dx, dw = poisoned_host(x.shape), poisoned_host(x.shape), poisoned_host(w.shape)
    emulate.prelu(x, w, y)
    emulate.prelu_backward(g, x, w, dx, dw)
    np.testing.assert_array_equal(y, R.prelu(x, w))
    ref_dx, ref_dw = R.prelu_backward(g, x, w)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_array_equal(dw, ref_dw)


@built
def test_emulated_prelu_rejects_a_weight_of_the_wrong_size():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="weight has 2 entries"):
        emulate.prelu(x, np.ones(2, np.float32), poisoned_host(x.shape))


@gpu
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
@given(n=SIZES, scale=st.sampled_from([0.5, 3.0, 12.0]), seed=st.integers(0, 2**31))
@settings(max_examples=10, deadline=None)
def test_gpu_activation_matches_oracle(name, kw, n, scale, seed):
    from cnnkit import _cuda as cu

    x, g = values(seed, n, scale)
    kernel, a, b = kernel_args(name, kw)
    dev_x, dev_g = to_device(x), to_device(g)
    y, dx = poisoned(n), poisoned(n)
    cu.activation(kernel, dev_x, y, a, b, stream_of(dev_x))
    cu.activation_backward(kernel, dev_g, dev_x, dx, a, b, stream_of(dev_x))
    check(name, kw, x, g, to_host(y), to_host(dx))


@gpu
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_gpu_public_ops_return_the_callers_kind(name, kw):
    from cnnkit.cuda import ops_act

    x, g = values(0, 300, 3.0)
    dev_x = to_device(x)
    y = getattr(ops_act, name)(dev_x, **kw)
    dx = getattr(ops_act, name + "_backward")(to_device(g), dev_x, **kw)
    assert type(y) is type(dev_x) and type(dx) is type(dev_x)
    check(name, kw, x, g, to_host(y), to_host(dx))


@gpu
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), shared=st.booleans(), seed=st.integers(0, 2**31))
@settings(max_examples=20, deadline=None)
def test_gpu_prelu_matches_oracle(shape, shared, seed):
    from cnnkit import _cuda as cu

    x, g, w = prelu_case(seed, shape, shared)
    dev_x, dev_w = to_device(x), to_device(w)
    y, dx, dw = poisoned(x.shape), poisoned(x.shape), poisoned(w.shape)
    cu.prelu(dev_x, dev_w, y, stream_of(dev_x))
    cu.prelu_backward(to_device(g), dev_x, dev_w, dx, dw, stream_of(dev_x))
    np.testing.assert_array_equal(to_host(y), R.prelu(x, w))
    ref_dx, ref_dw = R.prelu_backward(g, x, w)
    np.testing.assert_array_equal(to_host(dx), ref_dx)
    np.testing.assert_array_equal(to_host(dw), ref_dw)
