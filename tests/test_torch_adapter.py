"""cnnkit.torch: autograd Functions on cnnkit's kernels against PyTorch, and accelerate(model).

Each Function's output and gradients are checked against PyTorch in float64 (the oracle: float64
cannot go through cnnkit's float32 kernels, so torch's gradcheck does not apply) under the
tolerance rule, with A computed by PyTorch on absolute values.
"""

import copy
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolerance import SUBNORMAL_SPACING, assert_close
from torch_twins import lenet5

torch = pytest.importorskip("torch")
ct = pytest.importorskip("cnnkit.torch")
tf = torch.nn.functional


def _leaves(*arrays):
    """float32 tensors that require grad (None stays None)."""
    return [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]


def _grads_of(fn, arrays, dy, absolute=False):
    """Output and input gradients of ``fn`` in float64, at |arrays| and |dy| when ``absolute``."""
    f = np.abs if absolute else (lambda a: a)
    xs = [None if a is None else torch.tensor(f(a.astype(np.float64)), requires_grad=True) for a in arrays]
    out = fn(*xs)
    out.backward(torch.tensor(f(dy.astype(np.float64))))
    return out.detach().numpy(), [None if x is None else x.grad.numpy() for x in xs]


def _run_ours(fn, arrays, dy):
    xs = _leaves(*arrays)
    out = fn(*xs)
    assert out.dtype == torch.float32 and out.requires_grad
    out.backward(torch.tensor(dy))
    return out.detach().numpy(), [None if x is None else x.grad.numpy() for x in xs]


def _check_bilinear(name, ours, theirs, arrays, dy_shape, ks, rng):
    """An op linear in each input: A for every result is the op on absolute values."""
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    out, grads = _run_ours(ours, arrays, dy)
    ref_out, ref_grads = _grads_of(theirs, arrays, dy)
    a_out, a_grads = _grads_of(theirs, arrays, dy, absolute=True)
    assert_close(out, ref_out, a_out, ks[0], f"torch.{name}")
    for i, (g, r, a) in enumerate(zip(grads, ref_grads, a_grads)):
        if r is not None:
            assert_close(g, r, a, ks[i + 1], f"torch.{name}_backward[{i}]")


def _array(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@given(n=st.integers(1, 3), c=st.integers(1, 4), k=st.integers(1, 5), h=st.integers(3, 9), w=st.integers(3, 9),
       kh=st.integers(1, 3), kw=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
       dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]), bias=st.booleans(), seed=st.integers(0, 99))
def test_conv2d_matches_torch(n, c, k, h, w, kh, kw, stride, padding, dilation, groups, bias, seed):
    c, k = c * groups, k * groups
    if h + 2 * padding < dilation * (kh - 1) + 1 or w + 2 * padding < dilation * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    arrays = [_array(rng, n, c, h, w), _array(rng, k, c // groups, kh, kw), _array(rng, k) if bias else None]
    args = (stride, padding, dilation, groups)
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    _check_bilinear("conv2d", lambda x, wt, b: ct.conv2d(x, wt, b, *args),
                    lambda x, wt, b: tf.conv2d(x, wt, b, *args), arrays, (n, k, ho, wo),
                    (c // groups * kh * kw, k // groups * kh * kw, n * ho * wo, n * ho * wo), rng)


@given(n=st.integers(1, 6), fin=st.integers(1, 20), fout=st.integers(1, 12), lead=st.booleans(),
       seed=st.integers(0, 99))
def test_linear_matches_torch(n, fin, fout, lead, seed):
    rng = np.random.default_rng(seed)
    shape = (2, n, fin) if lead else (n, fin)
    arrays = [_array(rng, *shape), _array(rng, fout, fin), _array(rng, fout)]
    rows = int(np.prod(shape[:-1]))
    _check_bilinear("linear", ct.linear, tf.linear, arrays, shape[:-1] + (fout,), (fin, fout, rows, rows), rng)


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9), k=st.integers(1, 3),
       stride=st.integers(1, 3), pad=st.integers(0, 1), ceil_mode=st.booleans(), include=st.booleans(),
       seed=st.integers(0, 99))
def test_avg_pool2d_matches_torch(n, c, h, w, k, stride, pad, ceil_mode, include, seed):
    if 2 * pad > k or h + 2 * pad < k or w + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x = _array(rng, n, c, h, w)
    args = (k, stride, pad, ceil_mode, include)
    dy_shape = tf.avg_pool2d(torch.tensor(x), *args).shape
    _check_bilinear("avg_pool2d", lambda t: ct.avg_pool2d(t, *args), lambda t: tf.avg_pool2d(t, *args), [x],
                    tuple(dy_shape), (k * k, k * k), rng)


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9), k=st.integers(1, 3),
       stride=st.integers(1, 3), pad=st.integers(0, 1), dilation=st.integers(1, 2), ceil_mode=st.booleans(),
       seed=st.integers(0, 99))
def test_max_pool2d_matches_torch(n, c, h, w, k, stride, pad, dilation, ceil_mode, seed):
    if 2 * pad > k or h + 2 * pad < dilation * (k - 1) + 1 or w + 2 * pad < dilation * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    (x,) = _leaves(_array(rng, n, c, h, w))
    args = (k, stride, pad, dilation, ceil_mode)
    out, idx = ct.max_pool2d(x, *args, return_indices=True)
    x_t = x.detach().clone().requires_grad_(True)
    ref, ref_idx = tf.max_pool2d(x_t, *args, return_indices=True)
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())  # no arithmetic: exact
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())
    dy = torch.tensor(_array(rng, *out.shape))
    out.backward(dy)
    ref.backward(dy.double().float())
    # Overlapping windows add several dy into one position: a sum of up to k*k terms.
    a = tf.max_unpool2d(dy.abs(), ref_idx, k, stride, pad, output_size=x.shape[2:]) if dilation == 1 else (
        torch.full(x.shape, float(dy.abs().sum())))
    assert_close(x.grad.numpy(), x_t.grad.double().numpy(), a.numpy(), k * k, "torch.max_pool2d_backward")


@given(n=st.integers(2, 4), c=st.integers(1, 4), hw=st.integers(1, 5), affine=st.booleans(), training=st.booleans(),
       seed=st.integers(0, 99))
def test_batch_norm_matches_torch(n, c, hw, affine, training, seed):
    rng = np.random.default_rng(seed)
    x = _array(rng, n, c, hw, hw) * 2 + 1
    w, b = (_array(rng, c) + 1.5, _array(rng, c)) if affine else (None, None)
    rm, rv = _array(rng, c), np.abs(_array(rng, c)) + 0.5
    dy = _array(rng, *x.shape)
    rm_ours, rv_ours = torch.tensor(rm), torch.tensor(rv)
    xs = _leaves(x, w, b)
    out = ct.batch_norm(xs[0], rm_ours, rv_ours, xs[1], xs[2], training, 0.2, 1e-5)
    out.backward(torch.tensor(dy))
    x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w64 = None if w is None else torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b64 = None if b is None else torch.tensor(b, dtype=torch.float64, requires_grad=True)
    rm64, rv64 = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    ref = tf.batch_norm(x64, rm64, rv64, w64, b64, training, 0.2, 1e-5)
    ref.backward(torch.tensor(dy, dtype=torch.float64))
    # A: each formula on absolute values (x - mean rounds like |x| + |mean|).
    axes = (0, 2, 3)
    if training:
        mean, var = x64.detach().mean(axes, keepdim=True), x64.detach().var(axes, unbiased=False, keepdim=True)
    else:
        mean, var = rm64.view(1, -1, 1, 1), rv64.view(1, -1, 1, 1)
    inv = 1 / torch.sqrt(var + 1e-5)
    xhat = (x64.detach().abs() + mean.abs()) * inv
    wa = torch.ones(1, c, 1, 1, dtype=torch.float64) if w is None else w64.detach().abs().view(1, -1, 1, 1)
    ba = 0 if b is None else b64.detach().abs().view(1, -1, 1, 1)
    gy = torch.tensor(np.abs(dy), dtype=torch.float64)
    K = n * hw * hw
    assert_close(out.detach().numpy(), ref.detach().numpy(), (xhat * wa + ba).numpy(), K, "torch.batch_norm")
    a_dx = wa * inv * (gy + gy.mean(axes, keepdim=True) + xhat * (gy * xhat).mean(axes, keepdim=True))
    assert_close(xs[0].grad.numpy(), x64.grad.numpy(), a_dx.numpy(), K if training else 1,
                 "torch.batch_norm_backward.input")
    if affine:
        assert_close(xs[1].grad.numpy(), w64.grad.numpy(), (gy * xhat).sum(axes).numpy(), K,
                     "torch.batch_norm_backward.weight")
        assert_close(xs[2].grad.numpy(), b64.grad.numpy(), gy.sum(axes).numpy(), K, "torch.batch_norm_backward.bias")
    # The running statistics move as PyTorch's do: (1 - m) r + m * (mean or unbiased variance),
    # whose terms are bounded by max|x| and (2 max|x|)^2 * n / (n - 1).
    x_max = float(np.abs(x).max())
    assert_close(rm_ours.numpy(), rm64.numpy(), np.abs(rm) + x_max, K, "torch.batch_norm.running_mean")
    assert_close(rv_ours.numpy(), rv64.numpy(), np.abs(rv) + 8 * x_max**2, K, "torch.batch_norm.running_var")


def test_batch_norm_with_a_bias_and_no_weight():
    x, b = torch.randn(4, 3, 2, 2), torch.randn(3, requires_grad=True)
    dy = torch.randn(4, 3, 2, 2)
    out = ct.batch_norm(x, None, None, None, b, training=True)
    out.backward(dy)
    np.testing.assert_allclose(out.detach().numpy(), tf.batch_norm(x, None, None, None, b, True).detach().numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), dy.sum((0, 2, 3)).numpy(), rtol=1e-5, atol=1e-6)


ACTIVATIONS = [
    ("relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 1.3}), ("relu6", {}),
    ("sigmoid", {}), ("tanh", {}), ("softplus", {"beta": 1.5, "threshold": 10.0}),
]


@pytest.mark.parametrize("name,kw", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_activations_match_torch(name, kw, shape, seed):
    rng = np.random.default_rng(seed)
    x = _array(rng, *shape) * 4
    x.flat[0] = 6.5  # above relu6's upper kink
    dy = _array(rng, *shape)
    theirs = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(name) or getattr(tf, name)
    out, (dx,) = _run_ours(lambda t: getattr(ct, name)(t, **kw), [x], dy)
    x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = theirs(x64, **kw)
    (d1,) = torch.autograd.grad(y.sum(), x64, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x64) if d1.requires_grad else (torch.zeros_like(x64),)
    y, d1, d2, x64 = y.detach(), d1.detach(), d2.detach(), x64.detach()
    g = torch.tensor(dy, dtype=torch.float64)
    # The input's own rounding moves f by |x f'| and f' by |x f''|.
    assert_close(out, y.numpy(), (y.abs() + (x64 * d1).abs()).numpy(), 1, f"torch.{name}")
    # The oracle's own float64 rounding: tanh's 1 - y^2 cancels where y rounds near +-1.
    oracle = g.abs() * 2.0**-28
    assert_close(dx, (g * d1).numpy(), ((g * d1).abs() + (g * x64 * d2).abs() + oracle).numpy() + SUBNORMAL_SPACING,
                 1, f"torch.{name}_backward")


@given(n=st.integers(1, 5), c=st.integers(1, 5), seed=st.integers(0, 99))
def test_prelu_softmax_and_log_softmax_match_torch(n, c, seed):
    rng = np.random.default_rng(seed)
    x, wt, dy = _array(rng, n, c, 3), np.abs(_array(rng, c)), _array(rng, n, c, 3)
    wt[0] = -wt[0]
    out, (dx, dw) = _run_ours(ct.prelu, [x, wt], dy)
    ref, (ref_dx, ref_dw) = _grads_of(tf.prelu, [x, wt], dy)
    slope = np.maximum(np.abs(wt), 1)[:, None]
    assert_close(out, ref, np.abs(x) * slope, 1, "torch.prelu")
    assert_close(dx, ref_dx, np.abs(dy) * slope, 1, "torch.prelu_backward.input")
    assert_close(dw, ref_dw, np.abs(dy * x).sum((0, 2)), n * 3, "torch.prelu_backward.weight")
    g = dy.astype(np.float64)
    for name in ("softmax", "log_softmax"):
        out, (dx,) = _run_ours(lambda t: getattr(ct, name)(t, 1), [x], dy)
        ref, _ = _grads_of(lambda t: getattr(tf, name)(t, 1), [x], dy)
        assert_close(out, ref, np.abs(ref) + 1, c, f"torch.{name}")
        # As tests/test_linear_loss.py: the backward is judged on the float32 output it was given.
        y = out.astype(np.float64)
        if name == "softmax":
            ref_dx, a_dx = y * (g - (g * y).sum(1, keepdims=True)), y * (np.abs(g) + (np.abs(g) * y).sum(1, keepdims=True))
        else:
            ref_dx, a_dx = g - np.exp(y) * g.sum(1, keepdims=True), np.abs(g) + np.exp(y) * np.abs(g).sum(1, keepdims=True)
        assert_close(dx, ref_dx, a_dx + SUBNORMAL_SPACING, c, f"torch.{name}_backward")


@given(n=st.integers(1, 8), c=st.integers(1, 10), reduction=st.sampled_from(["mean", "sum", "none"]),
       ignore=st.booleans(), seed=st.integers(0, 99))
def test_cross_entropy_matches_torch(n, c, reduction, ignore, seed):
    rng = np.random.default_rng(seed)
    x = _array(rng, n, c) * 3
    t = rng.integers(0, c, n)
    if ignore:
        t[0] = -100
    (xt,) = _leaves(x)
    loss = ct.cross_entropy(xt, torch.tensor(t), reduction=reduction)
    assert loss.dtype == torch.float32
    g = torch.tensor(_array(rng, n)) if reduction == "none" else torch.tensor(0.7)
    loss.backward(g)
    x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = tf.cross_entropy(x64, torch.tensor(t), reduction=reduction)
    ref.backward(g.double())
    keep = t != -100
    rows = np.abs(x).max(1) + np.log(c) + np.abs(x[np.arange(n), np.where(keep, t, 0)])
    rows = np.where(keep, rows, 0)
    a_loss = rows if reduction == "none" else rows.sum() / (max(keep.sum(), 1) if reduction == "mean" else 1)
    assert_close(loss.detach().numpy(), ref.detach().numpy(), a_loss, c, "torch.cross_entropy")
    scale = np.abs(g.numpy()).reshape(-1, 1) / (max(keep.sum(), 1) if reduction == "mean" else 1)
    p = torch.softmax(x64.detach(), 1).numpy()
    a_grad = scale * (p + 1) * keep[:, None] + SUBNORMAL_SPACING
    assert_close(xt.grad.numpy(), x64.grad.numpy(), a_grad, c, "torch.cross_entropy_backward")


def test_unsupported_function_arguments_are_refused_by_name():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override=3 is not supported"):
        ct.avg_pool2d(x, 2, divisor_override=3)
    with pytest.raises(ValueError, match="relu: inplace=True is not supported"):
        ct.relu(x, inplace=True)
    with pytest.raises(ValueError, match="label_smoothing=0.1 is not supported"):
        ct.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), label_smoothing=0.1)


# ----------------------------------------------------------------------------
# accelerate
# ----------------------------------------------------------------------------


def _train(model, steps, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    losses = []
    for i in range(steps):
        batch = slice((i % 4) * 16, (i % 4) * 16 + 16)
        opt.zero_grad()
        loss = crit(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, opt


def test_accelerated_lenet5_trains_to_the_same_loss_curve():
    torch.manual_seed(0)
    plain = lenet5(torch)
    fast = copy.deepcopy(plain)
    params_before = list(fast.parameters())
    assert ct.accelerate(fast) is fast
    y = torch.arange(64) % 10
    x = torch.randn(10, 1, 28, 28)[y] + 0.5 * torch.randn(64, 1, 28, 28)  # a noisy template per class
    plain_losses, _ = _train(plain, 40, x, y)
    fast_losses, opt = _train(fast, 40, x, y)
    assert plain_losses[-1] < 0.1 * plain_losses[0]  # it learns
    # float32 rounding differs between the two (measured: 2.4e-7 at most over the 40 steps)
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-3, atol=1e-5)
    assert list(fast.parameters()) == params_before and opt.param_groups[0]["params"] == params_before
    for p, q in zip(plain.parameters(), fast.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), atol=2e-3)


def test_accelerate_runs_cnnkit_and_keeps_state_dict_and_batch_norm_buffers():
    torch.manual_seed(0)
    n = torch.nn
    model = n.Sequential(n.Conv2d(3, 8, 3, padding=1), n.BatchNorm2d(8), n.ReLU(), n.MaxPool2d(2),
                         n.Conv2d(8, 8, 3, padding="same"), n.BatchNorm2d(8, momentum=None), n.ELU(),
                         n.AvgPool2d(2), n.Flatten(), n.Linear(32, 10), n.LogSoftmax(1))
    twin = copy.deepcopy(model)
    keys = {k: v.data_ptr() for k, v in model.state_dict().items()}
    ct.accelerate(model)
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == keys
    swapped = [type(m).__name__ for m in model.modules() if "forward" in vars(m)]
    assert swapped == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm2d", "ELU", "AvgPool2d",
                       "Linear", "LogSoftmax"]
    x = torch.randn(4, 3, 8, 8)
    for _ in range(2):
        np.testing.assert_allclose(model(x).detach().numpy(), twin(x).detach().numpy(), atol=1e-4)
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k].numpy(), v.numpy(), atol=1e-5, err_msg=k)
    model.eval(), twin.eval()
    np.testing.assert_allclose(model(x).detach().numpy(), twin(x).detach().numpy(), atol=1e-4)
    pickle.loads(pickle.dumps(model))  # torch.save(model) still works while accelerated
    assert ct.restore(model) is model and not any("forward" in vars(m) for m in model.modules())


def test_accelerate_calls_cnnkit(monkeypatch):
    calls = []
    real = ct.F.conv2d
    monkeypatch.setattr(ct.F, "conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    conv = ct.accelerate(torch.nn.Conv2d(1, 2, 3))
    conv(torch.randn(1, 1, 5, 5))
    assert calls == [1]
    ct.restore(conv)
    conv(torch.randn(1, 1, 5, 5))
    assert calls == [1]


def test_unsupported_modules_fall_back_to_torch_and_say_so_once_per_type():
    n = torch.nn
    model = n.Sequential(n.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
                         n.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), n.ReLU(inplace=True), n.Tanh())
    twin = copy.deepcopy(model)
    with pytest.warns(ct.FallbackWarning) as record:
        ct.accelerate(model)
    assert [str(r.message) for r in record] == [
        "cnnkit.torch.accelerate: Conv2d with padding_mode='reflect' runs on PyTorch",
        "cnnkit.torch.accelerate: ReLU with inplace=True runs on PyTorch"]
    assert [type(m).__name__ for m in model.modules() if "forward" in vars(m)] == ["Tanh"]
    x = torch.randn(2, 1, 5, 5)
    np.testing.assert_allclose(model(x).detach().numpy(), twin(x).detach().numpy(), atol=1e-6)


def test_tensors_cnnkit_cannot_run_fall_back_at_call_time_once_per_type():
    n = torch.nn
    model = ct.accelerate(n.Sequential(n.Linear(4, 4), n.Linear(4, 4), n.Sigmoid()).double())
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.warns(ct.FallbackWarning) as record:
        out = model(x)
        model(x)
    assert sorted(str(r.message) for r in record) == [
        "cnnkit.torch.accelerate: Linear with a torch.float64 tensor on cpu (cnnkit runs dense float32 on the CPU)"
        " runs on PyTorch",
        "cnnkit.torch.accelerate: Sigmoid with a torch.float64 tensor on cpu (cnnkit runs dense float32 on the CPU)"
        " runs on PyTorch"]
    assert out.dtype == torch.float64
    meta = ct.accelerate(n.Conv2d(1, 2, 3).to("meta"))  # another device: PyTorch's forward
    with pytest.warns(ct.FallbackWarning, match="Conv2d with a torch.float32 tensor on meta"):
        assert meta(torch.empty(1, 1, 5, 5, device="meta")).shape == (1, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.float()(x.float())  # float32 again: cnnkit, no warning


def test_subclasses_with_their_own_forward_are_left_alone():
    class Doubled(torch.nn.Conv2d):
        def forward(self, input):
            return 2 * super().forward(input)

    model = ct.accelerate(torch.nn.Sequential(Doubled(1, 1, 3), torch.nn.CrossEntropyLoss()))
    assert [type(m).__name__ for m in model.modules() if "forward" in vars(m)] == ["CrossEntropyLoss"]
