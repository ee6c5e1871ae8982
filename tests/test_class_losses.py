"""cross_entropy in PyTorch's signature (class weights, label smoothing, probability targets,
(N, C, d1, ...) inputs), nll_loss, and their nn losses: against the float64 oracle, its finite
differences and PyTorch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import nn
from cnnkit import reference as R
from test_linear_loss import _numeric_gradient
from tolerance import assert_close



@st.composite
def cases(draw):
    classes = draw(st.integers(1, 5))
    shape = (draw(st.integers(0, 3)), classes) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if draw(st.booleans()) and shape[0] > 0:
        shape = (classes,)  # unbatched
    return dict(shape=shape, classes=classes, weighted=draw(st.booleans()),
                ignore=draw(st.sampled_from([-100, 0, 1])), smoothing=draw(st.sampled_from([0.0, 0.1, 0.5])),
                probabilities=draw(st.booleans()), reduction=draw(st.sampled_from(["mean", "sum", "none"])))


def _inputs(case, seed):
    rng = np.random.default_rng(seed)
    shape, classes = case["shape"], case["classes"]
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    w = rng.random(classes).astype(np.float32) + 0.1 if case["weighted"] else None
    class_dim = 0 if len(shape) == 1 else 1
    if case["probabilities"]:
        t = rng.random(shape).astype(np.float32)
        t /= np.maximum(t.sum(axis=class_dim, keepdims=True), 1e-3)
    else:
        t = rng.integers(0, classes, shape[:class_dim] + shape[class_dim + 1:])
    return rng, x, t, w


@given(case=cases(), seed=st.integers(0, 2**31))
def test_cross_entropy_matches_oracle(case, seed):
    rng, x, t, w = _inputs(case, seed)
    ignore = -100 if case["probabilities"] else case["ignore"]
    red, eps = case["reduction"], case["smoothing"]
    loss = F.cross_entropy(x, t, w, None, ignore, None, red, eps)
    expected = R.cross_entropy_general(x, t, w, ignore, red, eps)
    magnitude = R.cross_entropy_general(np.abs(x), np.abs(t), w, ignore, red, eps)
    classes = case["classes"]
    K = classes * (1 if red == "none" else max(x.size // classes, 1))
    # A: log-sum-exp rounds relative to its largest terms, which |x| bounds.
    assert_close(loss, expected, np.abs(magnitude) + np.abs(x).max(initial=0) * K, K, "cross_entropy")

    g = rng.standard_normal(np.shape(expected)) if red == "none" else 0.7
    grad = F.cross_entropy_backward(x, t, g, w, None, ignore, None, red, eps)
    assert grad.shape == x.shape and grad.dtype == np.float32
    if np.isnan(expected).any():  # a mean over no counted target: no gradient
        assert not grad.any()
        return
    numeric = _numeric_gradient(
        lambda v: np.sum(np.asarray(g) * R.cross_entropy_general(v, t, w, ignore, red, eps)), x.astype(np.float64))
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


@given(case=cases(), seed=st.integers(0, 2**31))
def test_nll_loss_matches_oracle(case, seed):
    case = dict(case, probabilities=False)
    rng, x, t, w = _inputs(case, seed)
    ignore, red = case["ignore"], case["reduction"]
    loss = F.nll_loss(x, t, w, None, ignore, None, red)
    expected = R.nll_loss(x, t, w, ignore, red)
    K = 1 if red == "none" else max(t.size, 1)
    assert_close(loss, expected, np.abs(R.nll_loss(np.abs(x), t, w, ignore, red)), K, "nll_loss")
    g = rng.standard_normal(np.shape(expected)) if red == "none" else 1.3
    grad = F.nll_loss_backward(x, t, g, w, None, ignore, None, red)
    if np.isnan(expected).any():
        assert not grad.any()
        return
    numeric = _numeric_gradient(lambda v: np.sum(np.asarray(g) * R.nll_loss(v, t, w, ignore, red)),
                                x.astype(np.float64))
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_nll_of_log_softmax_is_cross_entropy_and_native_path_agrees():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 3, -100, 1, 2, 2])
    ls = F.log_softmax(x, 1)
    for red in ("mean", "sum"):
        assert F.nll_loss(ls, t, reduction=red) == pytest.approx(F.cross_entropy(x, t, reduction=red), rel=1e-6)
    # The general NumPy path (a weight of ones) and the native kernel give the same numbers.
    ones = np.ones(4, np.float32)
    assert F.cross_entropy(x, t, ones) == pytest.approx(F.cross_entropy(x, t), rel=1e-6)
    np.testing.assert_allclose(F.cross_entropy_backward(x, t, 1.0, ones), F.cross_entropy_backward(x, t),
                               rtol=1e-5, atol=1e-7)
    # reduction="none" with a scalar upstream gradient: one for every element.
    np.testing.assert_allclose(F.cross_entropy_backward(x, t, 2.0, reduction="none"),
                               F.cross_entropy_backward(x, t, np.full(6, 2.0), reduction="none"))


def test_cross_entropy_matches_torch_with_every_option():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5, 3, 2)).astype(np.float32)
    t = rng.integers(0, 5, (4, 3, 2))
    t[0, 0, 0] = 2
    probs = rng.random(x.shape).astype(np.float32)
    w = rng.random(5).astype(np.float32)
    for target in (t, probs):
        for red in ("mean", "sum", "none"):
            ignore = 2 if target is t else -100
            xt = torch.from_numpy(x).requires_grad_()
            lt = tf.cross_entropy(xt, torch.from_numpy(target), torch.from_numpy(w), ignore_index=ignore,
                                  reduction=red, label_smoothing=0.2)
            g = rng.standard_normal(tuple(lt.shape)).astype(np.float32) if red == "none" else np.float32(1.0)
            lt.backward(torch.from_numpy(np.asarray(g)))
            ours = F.cross_entropy(x, target, w, ignore_index=ignore, reduction=red, label_smoothing=0.2)
            np.testing.assert_allclose(ours, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
            grad = F.cross_entropy_backward(x, target, g, w, ignore_index=ignore, reduction=red,
                                            label_smoothing=0.2)
            np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
            xt.grad = None
            lt = tf.nll_loss(xt, torch.from_numpy(t), torch.from_numpy(w), ignore_index=2, reduction=red)
            lt.backward(torch.from_numpy(np.asarray(g)))
            np.testing.assert_allclose(F.nll_loss(x, t, w, ignore_index=2, reduction=red), lt.detach().numpy(),
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(F.nll_loss_backward(x, t, g, w, ignore_index=2, reduction=red),
                                       xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_legacy_size_average_and_reduce_follow_pytorch():
    x = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    t = np.array([0, 1, 3])
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert F.cross_entropy(x, t, None, False) == pytest.approx(F.cross_entropy(x, t, reduction="sum"))
    with pytest.warns(UserWarning, match="reduction='none'"):
        np.testing.assert_array_equal(F.nll_loss(x, t, reduce=False), F.nll_loss(x, t, reduction="none"))
    with pytest.warns(UserWarning, match="reduction='mean'"):
        assert nn.NLLLoss(size_average=True).reduction == "mean"


def test_class_loss_errors_name_the_argument():
    x = np.zeros((3, 4), np.float32)
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="weight"):
        F.cross_entropy(x, t, np.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index"):
        F.cross_entropy(x, np.full((3, 4), 0.25, np.float32), ignore_index=1)
    with pytest.raises(TypeError, match="target"):
        F.cross_entropy(x, np.zeros((3, 5), np.float32))  # neither indices nor the input's shape
    with pytest.raises(TypeError, match="target"):
        F.nll_loss(x, np.full((3, 4), 0.25, np.float32))  # nll_loss takes no probabilities
    with pytest.raises(ValueError, match="target"):
        F.nll_loss(np.zeros((3, 4, 2), np.float32), t)
    with pytest.raises(ValueError, match="target"):
        F.nll_loss(np.zeros(4, np.float32), t)
    with pytest.raises(ValueError, match="input"):
        F.nll_loss(np.float32(1.0), t)
    with pytest.raises(IndexError, match="label 4"):
        F.nll_loss(x, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="label -1"):
        F.cross_entropy(x, np.array([0, -1, 1]), np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(x, t, reduction="avg")
    with pytest.raises(ValueError, match="grad_output"):
        F.nll_loss_backward(x, t, np.ones(2), reduction="none")
    with pytest.raises(ValueError, match="grad_output"):
        F.cross_entropy_backward(x, t, np.ones(3), np.ones(4))
    # Every target ignored: NaN mean, zero gradient (as the native kernel).
    assert np.isnan(F.nll_loss(x, np.full(3, -100)))
    assert not F.cross_entropy_backward(x, np.full(3, -100), 1.0, np.ones(4)).any()


def test_losses_take_pytorch_arguments_and_reduction_none():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 3, 2)).astype(np.float32)
    t = rng.integers(0, 3, (5, 2))
    w = rng.random(3).astype(np.float32)
    for ours, theirs in [
        (nn.CrossEntropyLoss(w, ignore_index=1, reduction="none", label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(torch.from_numpy(w), ignore_index=1, reduction="none", label_smoothing=0.1)),
        (nn.NLLLoss(w, reduction="sum"), torch.nn.NLLLoss(torch.from_numpy(w), reduction="sum")),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
    ]:
        xt = torch.from_numpy(x).requires_grad_()
        lt = theirs(xt, torch.from_numpy(t))
        loss = ours(x, t)
        np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
        if ours.reduction == "none":
            assert isinstance(loss, np.ndarray) and loss.shape == (5, 2)
            g = rng.standard_normal(loss.shape).astype(np.float32)
        else:
            assert isinstance(loss, float)
            g = np.float32(1.0)
        lt.backward(torch.from_numpy(np.asarray(g)))
        np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert nn.MSELoss(reduction="none")(np.ones(3), np.zeros(3)).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
