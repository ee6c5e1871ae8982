"""The Python op layer of cnnkit.cuda (ops_*.py) end to end without a GPU: each module runs on
NumPy arrays through the kernels' emulators (cuda_support.host_ops), and must give what its
cnnkit.functional twin gives: argument handling, reshapes (unbatched inputs), output allocation
and the order of the binding's arguments are all checked here; the GPU tests check the launch."""

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import optim
from cuda_support import built, host_ops
from test_optim import Param

pytestmark = built


def ops(monkeypatch, family):
    import importlib

    return host_ops(monkeypatch, importlib.import_module(f"cnnkit.cuda.ops_{family}"))


def close(got, want, rtol=2e-6, atol=1e-6):
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            close(g, w, rtol, atol)
    elif want is None:
        assert got is None
    else:
        got = np.asarray(got)
        want = np.asarray(want)
        assert got.shape == want.shape or (got.size == 1 and want.size == 1)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=rtol, atol=atol)


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32) * 3
G = RNG.standard_normal(X.shape).astype(np.float32)

ACTIVATIONS = [("relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 1.5}), ("relu6", {}),
               ("sigmoid", {}), ("tanh", {}), ("softplus", {"beta": 2.0, "threshold": 5.0}),
               ("hardtanh", {"min_val": -0.5, "max_val": 2.0}), ("gelu", {}), ("gelu", {"approximate": "tanh"}),
               ("silu", {})]


@pytest.mark.parametrize("name,kw", ACTIVATIONS)
def test_activations(monkeypatch, name, kw):
    m = ops(monkeypatch, "act")
    close(getattr(m, name)(X, **kw), getattr(F, name)(X, **kw))
    close(getattr(m, name + "_backward")(G, X, **kw), getattr(F, name + "_backward")(G, X, **kw))


def test_in_place_activations_and_prelu(monkeypatch):
    m = ops(monkeypatch, "act")
    for name in ("hardtanh", "silu"):
        x = X.copy()
        assert getattr(m, name)(x, inplace=True) is x
        close(x, getattr(F, name)(X))
    for w in (np.array([0.25, -0.5, 2.0], np.float32), np.float32(0.3) * np.ones((), np.float32)):
        close(m.prelu(X, w), F.prelu(X, w))
        close(m.prelu_backward(G, X, w), F.prelu_backward(G, X, w), rtol=1e-5)
    with pytest.raises(ValueError, match="grad_output shape"):
        m.relu_backward(G[:1], X)
    with pytest.raises(ValueError, match="beta"):
        m.softplus(X, beta=0.0)


def test_softmax(monkeypatch):
    m = ops(monkeypatch, "loss")
    for dim in (0, 1, -1):
        for log in ("", "log_"):
            y = getattr(m, log + "softmax")(X, dim)
            close(y, getattr(F, log + "softmax")(X, dim))
            close(getattr(m, log + "softmax_backward")(G, y, dim), getattr(F, log + "softmax_backward")(G, y, dim),
                  rtol=1e-5)
    with pytest.raises(TypeError, match="only float32"):
        m.softmax(X, dtype="float64")


LOGITS = RNG.standard_normal((6, 4, 3)).astype(np.float32)
LABELS = RNG.integers(0, 4, (6, 3))
LABELS[0, 0] = -100
WEIGHT = (RNG.random(4) + 0.5).astype(np.float32)
PROBS = RNG.random(LOGITS.shape).astype(np.float32)
PROBS /= PROBS.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"weight": WEIGHT}, {"label_smoothing": 0.2, "weight": WEIGHT}, {"ignore_index": 1}])
def test_cross_entropy_and_nll(monkeypatch, reduction, kw):
    m = ops(monkeypatch, "loss")
    labels = np.where(LABELS == -100, kw.get("ignore_index", -100), LABELS)
    kw = dict(kw, reduction=reduction)
    close(m.cross_entropy(LOGITS, labels, **kw), F.cross_entropy(LOGITS, labels, **kw), rtol=1e-5)
    g = 1.5 if reduction != "none" else RNG.standard_normal((6, 3)).astype(np.float32)
    close(m.cross_entropy_backward(LOGITS, labels, g, **kw), F.cross_entropy_backward(LOGITS, labels, g, **kw),
          rtol=1e-5, atol=1e-7)
    if "label_smoothing" not in kw:
        close(m.nll_loss(LOGITS, labels, **kw), F.nll_loss(LOGITS, labels, **kw), rtol=1e-5)
        close(m.nll_loss_backward(LOGITS, labels, g, **kw), F.nll_loss_backward(LOGITS, labels, g, **kw), rtol=1e-5)
    if "ignore_index" not in kw:
        close(m.cross_entropy(LOGITS, PROBS, **kw), F.cross_entropy(LOGITS, PROBS, **kw), rtol=1e-5)
        close(m.cross_entropy_backward(LOGITS, PROBS, g, **kw), F.cross_entropy_backward(LOGITS, PROBS, g, **kw),
              rtol=1e-5, atol=1e-7)


def test_unbatched_cross_entropy_and_bad_targets(monkeypatch):
    m = ops(monkeypatch, "loss")
    x, t = LOGITS[0, :, 0].copy(), np.array(2)
    close(m.cross_entropy(x, t), F.cross_entropy(x, t), rtol=1e-6)
    close(m.cross_entropy_backward(x, t), F.cross_entropy_backward(x, t), rtol=1e-6)
    with pytest.raises(ValueError, match="target must have shape"):
        m.cross_entropy(LOGITS, LABELS[:, :2])
    with pytest.raises(TypeError, match="class indices"):
        m.nll_loss(LOGITS, PROBS)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        m.cross_entropy(LOGITS, PROBS, ignore_index=0)


@pytest.mark.parametrize("x", [X, X[0]], ids=["NCHW", "CHW"])
def test_pooling(monkeypatch, x):
    m = ops(monkeypatch, "pool")
    out, idx = m.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    close(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    g = np.ones(ref_out.shape, np.float32)
    close(m.max_pool2d_backward(g, x, idx, 3, 2, 1, ceil_mode=True), F.max_pool2d_backward(g, x, ref_idx, 3, 2, 1,
                                                                                          ceil_mode=True))
    close(m.max_pool2d(x, (2, 1), dilation=(1, 2)), F.max_pool2d(x, (2, 1), dilation=(1, 2)))
    for kw in ({}, {"count_include_pad": False}, {"divisor_override": 3}):
        y = m.avg_pool2d(x, 3, 2, 1, **kw)
        close(y, F.avg_pool2d(x, 3, 2, 1, **kw))
        g = np.ones(y.shape, np.float32)
        close(m.avg_pool2d_backward(g, x, 3, 2, 1, **kw), F.avg_pool2d_backward(g, x, 3, 2, 1, **kw))
    y = m.adaptive_avg_pool2d(x, (2, None))
    close(y, F.adaptive_avg_pool2d(x, (2, None)))
    close(m.adaptive_avg_pool2d_backward(np.ones(y.shape, np.float32), x, (2, None)),
          F.adaptive_avg_pool2d_backward(np.ones(y.shape, np.float32), x, (2, None)))
    with pytest.raises(ValueError, match="CHW or NCHW"):
        m.max_pool2d(x[0, 0], 2)


@pytest.mark.parametrize("shape", [X.shape, (4, 3, 40, 60)], ids=["thread-per-channel", "chunked"])
def test_batch_norm_and_lrn(monkeypatch, shape):
    m = ops(monkeypatch, "norm")
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    g = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    w, b = RNG.standard_normal(3).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    close(m.batch_norm(x, rm, rv, w, b, True), F.batch_norm(x, rm_ref, rv_ref, w, b, True), rtol=1e-5, atol=1e-5)
    close(rm, rm_ref)
    close(rv, rv_ref)
    close(m.batch_norm(x, rm, rv, w, b), F.batch_norm(x, rm, rv, w, b), rtol=1e-5, atol=1e-6)
    for weight in (w, None):
        for training in (True, False):
            close(m.batch_norm_backward(g, x, rm, rv, weight, training),
                  F.batch_norm_backward(g, x, rm, rv, weight, training), rtol=1e-4, atol=1e-5)
    close(m.local_response_norm(X, 3), F.local_response_norm(X, 3))
    close(m.local_response_norm_backward(G, X, 3), F.local_response_norm_backward(G, X, 3), rtol=1e-5)


def test_dropout(monkeypatch):
    m = ops(monkeypatch, "dropout")
    cnnkit.manual_seed(3)
    out, mask = m.dropout(X, 0.25, return_mask=True)
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.75)}
    np.testing.assert_array_equal(out, X * mask)
    cnnkit.manual_seed(3)
    np.testing.assert_array_equal(m.dropout(X, 0.25), out)  # the seed repeats the mask
    np.testing.assert_array_equal(m.dropout_backward(G, mask), G * mask)
    np.testing.assert_array_equal(m.dropout(X, 0.25, training=False), X)
    x = X.copy()
    assert m.dropout(x, 0.5, inplace=True) is x
    out, mask = m.dropout2d(X, 0.5, return_mask=True)
    assert mask.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(out, X * mask)
    np.testing.assert_array_equal(m.dropout2d_backward(G, mask), G * mask)
    with pytest.raises(ValueError, match="between 0 and 1"):
        m.dropout(X, 1.5)


def test_optimizer_steps_equal_cnnkit_optim(monkeypatch):
    m = ops(monkeypatch, "optim")
    p0 = RNG.standard_normal(50).astype(np.float32)
    grads = [RNG.standard_normal(50).astype(np.float32) for _ in range(3)]
    cases = [
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
        ("AdamW", dict(lr=0.01)),
        ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.2)),
        ("Adadelta", dict(lr=0.5, weight_decay=0.1)),
    ]
    for name, options in cases:
        cpu = Param(p0)
        opt = getattr(optim, name)([cpu], **options)
        p = p0.copy()
        zeros = [np.zeros_like(p) for _ in range(3)]
        for step, g in enumerate(grads, 1):
            cpu.grad = g
            opt.step()
            if name == "SGD":
                m.sgd_step(p, g, zeros[0], lr=0.1, momentum=0.9, nesterov=True, first=step == 1, weight_decay=0.01)
            elif name.startswith("Adam"):
                m.adam_step(p, g, zeros[0], zeros[1], zeros[2] if options.get("amsgrad") else None, step=step,
                            lr=0.01, weight_decay=options.get("weight_decay", 1e-2 if name == "AdamW" else 0),
                            decoupled=name == "AdamW")
            elif name == "RMSprop":
                m.rmsprop_step(p, g, zeros[0], zeros[1], zeros[2], lr=0.01, momentum=0.5)
            elif name == "Adadelta":
                m.adadelta_step(p, g, zeros[0], zeros[1], lr=0.5, weight_decay=0.1)
            else:
                if step == 1:
                    zeros[0][:] = 0.2
                m.adagrad_step(p, g, zeros[0], step=step, lr=0.1, lr_decay=0.1)
        np.testing.assert_array_equal(p, cpu.data, err_msg=name)
