"""CUDA softmax, log-softmax, cross-entropy and NLL against the float64 oracle: emulated on the host
(here) in both row forms (a block per row, a thread per row), and on a GPU (skipped without one),
outputs poisoned with NaN."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import reference as R
from cuda_support import built, emulate, gpu, on_gpu, on_host, poisoned_host, to_device, to_host
from test_class_losses import _inputs, cases
from test_linear_loss import _numeric_gradient, _softmax_magnitudes
from tolerance import assert_close

# The emulator and the GPU binding take the same arguments but the stream.
@st.composite
def softmax_cases(draw):
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    if draw(st.booleans()):  # long rows, across the 256 threads of a block
        axis = draw(st.integers(0, len(shape) - 1))
        shape = shape[:axis] + (draw(st.sampled_from([255, 256, 300, 513])),) + shape[axis + 1:]
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, dim


def check_softmax(on, shape, dim, log, by_block, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    axis = dim % len(shape)
    y, dx = on["poison"](shape), on["poison"](shape)
    on["run"]("softmax", on["array"](x), y, axis, log, by_block)
    y = on["back"](y)
    on["run"]("softmax_backward", on["array"](g), on["array"](y), dx, axis, log, by_block)
    dx = on["back"](dx)
    name = "log_softmax" if log else "softmax"
    y_ref = getattr(R, name)(x, axis)
    a_y, a_dx = _softmax_magnitudes(log, y_ref, g.astype(np.float64))
    K = shape[axis]
    assert_close(y, y_ref, a_y, K, "cuda " + name)
    # The backward is judged on the float32 output it was given.
    a_dx = _softmax_magnitudes(log, y.astype(np.float64), g.astype(np.float64))[1](axis)
    assert_close(dx, getattr(R, name + "_backward")(g, y, axis), a_dx, K, "cuda " + name + "_backward")


@built
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("by_block", [False, True])
@given(case=softmax_cases(), scale=st.sampled_from([1.0, 10.0, 1e3]), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_emulated_softmax_matches_oracle(log, by_block, case, scale, seed):
    check_softmax(on_host(), *case, log, by_block, scale, seed)


@built
@pytest.mark.parametrize("by_block", [False, True])
def test_emulated_softmax_special_values(by_block):
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf] * 3, [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0]], np.float32)
    for log in (False, True):
        y = poisoned_host(x.shape)
        emulate.softmax(x, y, 1, log, by_block)
        expected = (R.log_softmax if log else R.softmax)(x, 1)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        finite = ~np.isnan(expected)
        np.testing.assert_allclose(y[finite], expected[finite], rtol=1e-6)


@built
def test_emulated_softmax_rejects_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        emulate.softmax(x, poisoned_host(x.shape), 2, False, True)
    with pytest.raises(ValueError, match="out has 5 elements"):
        emulate.softmax(x, poisoned_host(5), 1, False, True)
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        emulate.softmax_backward(np.zeros((3, 2), np.float32), x, poisoned_host(x.shape), 1, False, True)


def class_loss_inputs(case, seed, log_softmax):
    """test_class_losses' inputs (probability targets for cross-entropy only), unbatched ones as a
    batch of one row."""
    rng, x, t, w = _inputs(dict(case, probabilities=case["probabilities"] and log_softmax), seed)
    if x.ndim == 1:
        x, t = x[None], (t[None] if t.ndim else t.reshape(1))
    return rng, x, t, w


def check_class_loss(on, case, seed, log_softmax, by_block):
    rng, x, t, w = class_loss_inputs(case, seed, log_softmax)
    probabilities = t.dtype == np.float32
    classes = case["classes"]
    ignore, red = (-100 if probabilities else case["ignore"]), case["reduction"]
    eps = case["smoothing"] if log_softmax else 0.0
    rows = x.size // classes if classes else 0
    loss_shape = x.shape[:1] + x.shape[2:]
    out = on["poison"](loss_shape if red == "none" else (1,))
    scratch = on["poison"]((2 * rows,), np.float64)
    weight = None if w is None else on["array"](w)
    dev_x, dev_t = on["array"](x), on["array"](t if probabilities else t.astype(np.int64))
    on["run"]("class_loss", dev_x, dev_t, probabilities, weight, out, scratch, ignore, eps, log_softmax, red, by_block)
    loss = on["back"](out).reshape(loss_shape if red == "none" else ())
    if log_softmax:
        def oracle(v):
            return R.cross_entropy_general(v, t, w, ignore, red, eps)

        # log-sum-exp rounds relative to its largest terms, which |x| bounds (as test_class_losses).
        magnitude = np.abs(R.cross_entropy_general(np.abs(x), np.abs(t), w, ignore, red, eps))
        magnitude = magnitude + np.abs(x).max(initial=0) * classes * (1 if red == "none" else max(rows, 1))
    else:
        def oracle(v):
            return R.nll_loss(v, t, w, ignore, red)

        magnitude = np.abs(R.nll_loss(np.abs(x), t, w, ignore, red))
    K = classes * (1 if red == "none" else max(rows, 1))
    expected = oracle(x)
    assert_close(loss, expected, magnitude, K, "cuda class_loss")

    g = rng.standard_normal(loss_shape).astype(np.float32) if red == "none" else np.float32(0.7)
    grad = on["poison"](x.shape)
    scratch = on["poison"]((1 + rows,), np.float64)
    on["run"]("class_loss_backward", dev_x, dev_t, probabilities, weight, on["array"](np.asarray(g).reshape(-1)),
              grad, scratch, ignore, eps, log_softmax, red, by_block)
    grad = on["back"](grad)
    if np.isnan(expected).any():  # a mean over no counted target: no gradient
        np.testing.assert_array_equal(grad, 0)
        return
    numeric = _numeric_gradient(lambda v: np.sum(g.astype(np.float64) * oracle(v)), x.astype(np.float64))
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


@built
@pytest.mark.parametrize("log_softmax", [True, False], ids=["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("by_block", [False, True])
@given(case=cases(), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_emulated_class_loss_matches_oracle(log_softmax, by_block, case, seed):
    check_class_loss(on_host(), case, seed, log_softmax, by_block)


@built
def test_emulated_class_loss_bad_target_gives_nan_and_arguments_are_checked():
    x = np.zeros((3, 4), np.float32)
    t = np.array([0, 7, 1])
    out = poisoned_host(3)
    emulate.class_loss(x, t, False, None, out, poisoned_host(6, np.float64), -100, 0.0, True, "none", False)
    assert np.isnan(out[1]) and not np.isnan(out[[0, 2]]).any()
    with pytest.raises(TypeError, match="target must have dtype <i8"):
        emulate.class_loss(x, t.astype(np.int32), False, None, out, poisoned_host(6, np.float64), -100, 0.0, True,
                           "none", False)
    with pytest.raises(ValueError, match="weight has 3 elements, expected 4"):
        emulate.class_loss(x, t, False, np.ones(3, np.float32), out, poisoned_host(6, np.float64), -100, 0.0, True,
                           "none", False)
    with pytest.raises(ValueError, match="reduction must be"):
        emulate.class_loss(x, t, False, None, out, poisoned_host(6, np.float64), -100, 0.0, True, "avg", False)
    with pytest.raises(ValueError, match="probability targets are for cross-entropy"):
        emulate.class_loss(x, x, True, None, out, poisoned_host(6, np.float64), -100, 0.0, False, "none", False)
    with pytest.raises(ValueError, match="probability targets must have the input's shape"):
        emulate.class_loss(x, x[:2], True, None, out, poisoned_host(6, np.float64), -100, 0.0, True, "none", False)


@gpu
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("by_block", [False, True])
@given(case=softmax_cases(), scale=st.sampled_from([1.0, 10.0, 1e3]), seed=st.integers(0, 2**31))
@settings(max_examples=15, deadline=None)
def test_gpu_softmax_matches_oracle(log, by_block, case, scale, seed):
    check_softmax(on_gpu(), *case, log, by_block, scale, seed)


@gpu
@pytest.mark.parametrize("log_softmax", [True, False], ids=["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("by_block", [False, True])
@given(case=cases(), seed=st.integers(0, 2**31))
@settings(max_examples=20, deadline=None)
def test_gpu_class_loss_matches_oracle(log_softmax, by_block, case, seed):
    check_class_loss(on_gpu(), case, seed, log_softmax, by_block)


@gpu
def test_gpu_public_losses_match_the_cpu_ops():
    from cnnkit import functional as F
    from cnnkit.cuda import ops_loss

    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 2)).astype(np.float32)
    t = rng.integers(0, 5, (6, 2))
    t[0, 0] = -100
    w = rng.random(5).astype(np.float32) + 0.5
    loss = ops_loss.cross_entropy(to_device(x), to_device(t), to_device(w), label_smoothing=0.2)
    np.testing.assert_allclose(to_host(loss)[0], F.cross_entropy(x, t, w, label_smoothing=0.2), rtol=1e-5)
    grad = ops_loss.cross_entropy_backward(to_device(x), to_device(t), 2.0, to_device(w), label_smoothing=0.2)
    np.testing.assert_allclose(to_host(grad), F.cross_entropy_backward(x, t, 2.0, w, label_smoothing=0.2),
                               rtol=1e-5, atol=1e-7)
    q = rng.random(x.shape).astype(np.float32)
    q /= q.sum(axis=1, keepdims=True)
    loss = ops_loss.cross_entropy(to_device(x), to_device(q), reduction="sum")
    np.testing.assert_allclose(to_host(loss)[0], F.cross_entropy(x, q, reduction="sum"), rtol=1e-5)
    y = ops_loss.log_softmax(to_device(x), 1)
    np.testing.assert_allclose(to_host(y), F.log_softmax(x, 1), rtol=1e-5, atol=1e-6)
