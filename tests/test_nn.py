"""cnnkit.nn: every layer's gradient (gradcheck), state_dict layout and round trips, containers,
and, when PyTorch is installed, forward/backward against torch.nn with the same weights."""

import math

import numpy as np
import pytest

import cnnkit
import torch_twins
from cnnkit import nn


def _rand(*shape, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _away_from_kinks(shape, seed=0, kinks=(0.0,), gap=0.05):
    """Random values at least `gap` away from each kink, so finite differences stay on one side."""
    x = _rand(*shape, seed=seed, low=-2, high=2)
    for k in kinks:
        near = np.abs(x - k) < gap
        x[near] = k + np.where(x[near] >= k, gap, -gap) * 2
    return x


def _distinct(shape, seed=0):
    """Values whose pairwise gaps exceed the finite-difference step (max pooling is not at a tie)."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) * 0.05 - n * 0.025).astype(np.float32)


GRADCHECK_CASES = [
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 7)),
    ("Conv2d-grouped-dilated", lambda: nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2), (2, 4, 6, 6)),
    ("Conv2d-depthwise", lambda: nn.Conv2d(3, 3, 3, groups=3, bias=False), (1, 3, 5, 5)),
    ("Linear", lambda: nn.Linear(5, 4), (3, 5)),
    ("MaxPool2d", lambda: nn.MaxPool2d(3, 2, padding=1), "distinct:(2, 2, 7, 7)"),
    ("AvgPool2d", lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False), (2, 2, 6, 6)),
    ("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (4, 3, 3, 3)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(5), (6, 5)),
    ("LocalResponseNorm", lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), (2, 5, 3, 3)),
    ("ReLU", nn.ReLU, "kinks:(3, 4)"),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.1), "kinks:(3, 4)"),
    ("PReLU", lambda: nn.PReLU(3), "kinks:(2, 3, 4)"),
    ("ELU", nn.ELU, "kinks:(3, 4)"),
    ("ReLU6", nn.ReLU6, "kinks6:(3, 4)"),
    ("Sigmoid", nn.Sigmoid, (3, 4)),
    ("Tanh", nn.Tanh, (3, 4)),
    ("Softplus", nn.Softplus, (3, 4)),
    ("Flatten", nn.Flatten, (2, 3, 2, 2)),
    ("Sequential", lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2)), (2, 2, 4, 4)),
    ("Residual", lambda: nn.Residual(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.Tanh()),
                                     nn.Conv2d(2, 4, 1, stride=2)), (2, 2, 5, 5)),
]


def _input(spec, seed):
    if isinstance(spec, tuple):
        return _rand(*spec, seed=seed)
    kind, shape = spec.split(":")
    shape = eval(shape)  # noqa: S307 - literal tuples written above
    if kind == "distinct":
        return _distinct(shape, seed)
    kinks = (0.0, 6.0) if kind == "kinks6" else (0.0,)
    return _away_from_kinks(shape, seed, kinks)


@pytest.mark.parametrize("name,make,spec", GRADCHECK_CASES, ids=[c[0] for c in GRADCHECK_CASES])
def test_layer_gradient_matches_finite_differences(name, make, spec):
    cnnkit.manual_seed(3)
    layer = make()
    x = _input(spec, seed=1)
    ok, worst = cnnkit.gradcheck(layer, x, eps=1e-2, samples=30, tolerance=2e-2)
    assert ok, f"{name}: {worst}"


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(nn.Tanh):
        def backward(self, grad_output, input_grad=True):
            return 1.1 * super().backward(grad_output, input_grad)

    ok, worst = cnnkit.gradcheck(Wrong(), _rand(3, 4), eps=1e-2)
    assert not ok and worst["input"] > 0.05


def test_frozen_parameters_get_no_gradient():
    layer = nn.Conv2d(2, 3, 3)
    layer.weight.requires_grad = False
    layer(_rand(1, 2, 5, 5))
    layer.backward(np.ones((1, 3, 3, 3), np.float32))
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_gradients_accumulate_until_zero_grad():
    layer = nn.Linear(3, 2)
    x, g = _rand(4, 3), _rand(4, 2, seed=1)
    layer(x)
    layer.backward(g)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2), (2, 2, 4, 4)),
    (lambda: nn.Linear(5, 4), (3, 5)),
    (lambda: nn.BatchNorm2d(2), (3, 2, 4, 4)),
], ids=["conv", "conv_transpose", "linear", "batch_norm"])
def test_layer_gradients_adopted_without_copy_accumulate_as_copies_did(make, shape):
    """The layers keep the gradient their backward op returned instead of a copy of it. Integer
    fills make every sum exact: two backward calls give exactly twice one; a gradient the caller
    kept from before zero_grad() is never written again; zero_grad(set_to_none=False) keeps
    accumulating into the same array; the public accumulate_grad still copies its argument."""
    layer = make()
    rng = np.random.default_rng(0)
    for p in layer.parameters():
        p.data[...] = rng.integers(-2, 3, p.data.shape)
    x = rng.integers(-2, 3, shape).astype(np.float32)
    g = rng.integers(-2, 3, layer(x).shape).astype(np.float32)
    layer.backward(g)
    once = {name: p.grad.copy() for name, p in layer.named_parameters()}
    kept = {name: p.grad for name, p in layer.named_parameters()}
    layer.backward(g)
    for name, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, 2 * once[name], err_msg=name)
        assert p.grad.dtype == np.float32 and p.grad is kept[name]
    twice = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer.zero_grad()
    layer(x)
    layer.backward(g)
    for name, p in layer.named_parameters():
        np.testing.assert_array_equal(kept[name], twice[name], err_msg=name)
        np.testing.assert_array_equal(p.grad, once[name], err_msg=name)
        assert p.grad is not kept[name] and not np.shares_memory(p.grad, kept[name])
    same = {name: p.grad for name, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=False)
    layer.backward(g)
    for name, p in layer.named_parameters():
        assert p.grad is same[name]
        np.testing.assert_array_equal(p.grad, once[name], err_msg=name)
    p = next(iter(layer.parameters()))
    p.grad = None
    mine = np.ones(p.data.shape, np.float32)
    p.accumulate_grad(mine)
    mine[...] = 7
    np.testing.assert_array_equal(p.grad, np.ones(p.data.shape))
    # A view is not adopted: its base would keep writing into the gradient.
    p.grad = None
    base = np.ones((2, *p.data.shape), np.float32)
    p._accumulate_result(base[0])
    base[...] = 5
    np.testing.assert_array_equal(p.grad, np.ones(p.data.shape))


def test_a_large_gradient_from_the_array_cache_is_adopted_not_copied(monkeypatch):
    """A weight gradient of 256 KiB comes from the native array cache (its owner is a capsule, not
    None); the layer still keeps that array itself. Copying it cost mnist_cnn's training step a pass
    over its 12 MB first linear weight."""
    from cnnkit import functional as F

    returned = []
    linear_backward = F.linear_backward

    def recording(*args, **kwargs):
        returned.append(linear_backward(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(F, "linear_backward", recording)
    layer = nn.Linear(256, 256)
    x = np.ones((4, 256), np.float32)
    layer(x)
    layer.backward(np.ones((4, 256), np.float32))
    _, dw, db = returned[-1]
    assert dw.base is not None  # from the cache: otherwise this test checks nothing new
    assert layer.weight.grad is dw and layer.bias.grad is db
    np.testing.assert_array_equal(dw, np.full((256, 256), 4, np.float32))


def test_sequential_skips_first_input_gradient():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    model(_rand(1, 1, 5, 5))
    assert model.backward(np.ones((1, 2, 3, 3), np.float32), input_grad=False) is None
    assert model[0].weight.grad is not None


def _fusable_model():
    """Every pairing Sequential fuses (batch norm then ReLU, a residual sum then ReLU, 1-D and
    2-D batch norm, eval and training) and a batch norm whose ReLU is not next to it."""
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Sequential(nn.Residual(block), nn.ReLU()),
                         nn.BatchNorm2d(4), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _layer_by_layer(model, x, grad):
    """Forward and backward one layer at a time (Sequential's loops, unfused), recursing into
    nested Sequentials."""
    def run(seq, x):
        for m in seq:
            x = run(m, x) if type(m) is nn.Sequential else m(x)
        return x

    def back(seq, g):
        for m in reversed(list(seq)):
            g = back(m, g) if type(m) is nn.Sequential else m.backward(g)
        return g
    return run(model, x), back(model, grad)


@pytest.mark.parametrize("training", [True, False])
def test_sequential_fused_relus_match_layer_by_layer_bit_for_bit(training):
    x = _rand(5, 3, 8, 8)
    grad = _rand(5, 3, seed=1)
    results = []
    for fused in (True, False):
        cnnkit.manual_seed(0)
        model = _fusable_model().train(training)
        if fused:
            out = model(x)
            dx = model.backward(grad)
        else:
            out, dx = _layer_by_layer(model, x, grad)
        results.append((out, dx, [p.grad for p in model.parameters()],
                        [b for b in model.state_dict().values()]))
    (out, dx, grads, state), (out2, dx2, grads2, state2) = results
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(dx, dx2)
    for a, b in zip(grads + state, grads2 + state2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("with_nan", [False, True])
def test_sequential_pooling_before_relu_matches_layer_by_layer_bit_for_bit(with_nan):
    """A ReLU followed by max pooling runs after it (on the pooled values): the same outputs and
    gradients as in the written order, overlapping padded windows and a NaN included."""
    x = _rand(3, 2, 13, 13, seed=4, low=-2, high=2)
    if with_nan:
        x[0, 1, 2, 3] = np.nan
    grad = _rand(3, 12, seed=5)
    results = []
    for reordered in (True, False):
        cnnkit.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                              nn.Conv2d(4, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        if reordered:
            out, dx = model(x), model.backward(grad)
        else:
            out, dx = _layer_by_layer(model, x, grad)
        results.append([out, dx] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_fused_batch_norm_relu_falls_back_when_the_relu_ran_alone():
    """After a fused forward, a ReLU called on its own keeps its own input: Sequential's backward
    must then take the two layers' own backwards, as it would unfused."""
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU())
    x = _rand(3, 2, 4, 4)
    model(x)
    other = _rand(3, 2, 4, 4, seed=2)
    model[1](other)  # the ReLU now holds `other`
    grad = _rand(3, 2, 4, 4, seed=3)
    expected = model[0].backward(model[1].backward(grad))
    np.testing.assert_array_equal(model.backward(grad), expected)


def test_state_dict_keys_and_layouts_follow_pytorch():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked", "4.weight", "4.bias"]
    assert sd["0.weight"].shape == (4, 1, 3, 3) and sd["4.weight"].shape == (2, 4)
    assert sd["1.num_batches_tracked"].dtype == np.int64


def test_state_dict_round_trip_and_strict_errors():
    cnnkit.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    a.train()
    a(_rand(3, 1, 4, 4))  # moves the running statistics
    b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    before = b.state_dict()
    bad = dict(a.state_dict())
    bad["0.weight"] = np.zeros((3, 1, 3, 3), np.float32)
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        b.load_state_dict(bad)
    missing = dict(a.state_dict())
    del missing["1.running_var"]
    with pytest.raises(RuntimeError, match="missing keys: 1.running_var"):
        b.load_state_dict(missing)
    for k, v in before.items():  # nothing half-loaded
        np.testing.assert_array_equal(b.state_dict()[k], v)
    assert b.load_state_dict(missing, strict=False) == (["1.running_var"], [])


def test_load_state_dict_refuses_values_the_cast_would_change():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    overflow = {k: np.array(v, np.float64) for k, v in before.items()}
    overflow["0.weight"][0, 0, 0, 0] = 1e300
    with pytest.raises(RuntimeError, match="value change for 0.weight: float64 value 1e[+]?300 overflows float32"):
        model.load_state_dict(overflow)
    fraction = dict(before, **{"1.num_batches_tracked": np.array(2.5)})
    with pytest.raises(RuntimeError, match="value change for 1.num_batches_tracked: .*not exactly representable"):
        model.load_state_dict(fraction)
    for k, v in before.items():  # nothing half-loaded
        np.testing.assert_array_equal(model.state_dict()[k], v)
    rounded = {k: np.array(v, np.float64) + (1e-12 if v.dtype == np.float32 else 0) for k, v in before.items()}
    model.load_state_dict(rounded)  # float64 that only rounds into float32 loads
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before["0.weight"])


def test_batchnorm_updates_running_stats_in_training_only():
    bn = nn.BatchNorm2d(2)
    x = _rand(4, 2, 3, 3) * 3 + 1
    bn(x)
    expected_mean = 0.1 * x.astype(np.float64).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean, expected_mean, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    before = bn.running_mean.copy()
    bn(x)
    np.testing.assert_array_equal(bn.running_mean, before)


def test_dropout_is_inverted_and_off_in_eval():
    cnnkit.manual_seed(0)
    d = nn.Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    y = d(x)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    g = d.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_manual_seed_makes_init_and_dropout_reproducible():
    def run():
        cnnkit.manual_seed(42)
        m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
        return m.state_dict()["0.weight"], m(np.ones((2, 8), np.float32))

    (w1, y1), (w2, y2) = run(), run()
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(y1, y2)


def test_default_initialisation_bounds_follow_pytorch():
    conv = nn.Conv2d(6, 16, 5)
    bound = 1 / math.sqrt(6 * 25)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.8 * bound


def test_init_functions():
    w = nn.Parameter(np.zeros((64, 32), np.float32))
    nn.init.xavier_uniform_(w)
    assert np.abs(w.data).max() <= math.sqrt(6 / 96) and w.data.std() > 0.1
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.data.std() - math.sqrt(2 / 32)) < 0.03
    nn.init.zeros_(w)
    assert not w.data.any()
    with pytest.raises(ValueError):
        nn.init.xavier_uniform_(np.zeros(3, np.float32))


def test_summary_lists_shapes_params_and_flops(capsys):
    model = cnnkit.models.lenet5()
    rows = model.summary((1, 28, 28))
    out = capsys.readouterr().out
    assert "total params: 61,706" in out
    assert rows[0][2] == (6, 28, 28) and rows[0][3] == 156 and rows[0][4] == 2 * 6 * 28 * 28 * 25
    assert rows[-1][2] == (10,)


def test_losses_forward_and_backward():
    logits = _rand(5, 4, seed=2) * 3
    target = np.array([0, 3, 1, 2, 3])
    ce = nn.CrossEntropyLoss()
    loss = ce(logits, target)
    z = logits.astype(np.float64)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert abs(loss - (-logp[np.arange(5), target].mean())) < 1e-6
    g = ce.backward()
    p = np.exp(logp)
    p[np.arange(5), target] -= 1
    np.testing.assert_allclose(g, p / 5, rtol=1e-5, atol=1e-7)

    pred, tgt = _rand(3, 2, seed=3), _rand(3, 2, seed=4)
    mse = nn.MSELoss()
    assert abs(mse(pred, tgt) - ((pred.astype(np.float64) - tgt) ** 2).mean()) < 1e-7
    np.testing.assert_allclose(mse.backward(), 2 * (pred - tgt) / 6, rtol=1e-6)
    l1 = nn.L1Loss(reduction="sum")
    assert abs(l1(pred, tgt) - np.abs(pred.astype(np.float64) - tgt).sum()) < 1e-6
    np.testing.assert_array_equal(l1.backward(), np.sign(pred - tgt))

    hinge = nn.MultiMarginLoss()
    x = np.array([[0.1, 0.2, 0.4, 0.8]], np.float32)
    # PyTorch's documented example: ((1-0.8+0.1) + (1-0.8+0.2) + (1-0.8+0.4)) / 4
    assert abs(hinge(x, np.array([3])) - 0.325) < 1e-6
    np.testing.assert_allclose(hinge.backward(), [[0.25, 0.25, 0.25, -0.75]], rtol=1e-6)
    with pytest.raises(RuntimeError):
        nn.MSELoss().backward()


# --- against PyTorch, when installed -------------------------------------------------------------


def _torch_pair(make_ours, make_theirs):
    torch = pytest.importorskip("torch")
    cnnkit.manual_seed(5)
    ours = make_ours()
    theirs = make_theirs(torch)
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return torch, ours, theirs


TORCH_CASES = [
    ("conv", lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3),
     lambda t: t.nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3), (2, 3, 8, 8)),
    ("lenet", lambda: cnnkit.models.lenet5(), torch_twins.lenet5, (4, 1, 28, 28)),
    ("bn-seq", lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
     lambda t: t.nn.Sequential(t.nn.Conv2d(2, 4, 3, padding=1, bias=False), t.nn.BatchNorm2d(4), t.nn.ReLU(),
                               t.nn.AdaptiveAvgPool2d(1), t.nn.Flatten(), t.nn.Linear(4, 3)), (5, 2, 6, 6)),
    ("lrn-prelu", lambda: nn.Sequential(nn.LocalResponseNorm(3), nn.PReLU(4), nn.AdaptiveAvgPool2d((2, 3))),
     lambda t: t.nn.Sequential(t.nn.LocalResponseNorm(3), t.nn.PReLU(4), t.nn.AdaptiveAvgPool2d((2, 3))),
     (2, 4, 5, 7)),
]


@pytest.mark.parametrize("name,ours,theirs,shape", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_layers_match_pytorch(name, ours, theirs, shape):
    torch, a, b = _torch_pair(ours, theirs)
    x = _rand(*shape, seed=7)
    y = a(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = b(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = _rand(*y.shape, seed=8)
    dx = a.backward(g)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    grads = dict(b.named_parameters())
    for pname, p in a.named_parameters():
        np.testing.assert_allclose(p.grad, grads[pname].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=pname)
    for key, value in b.state_dict().items():  # running statistics moved the same way
        np.testing.assert_allclose(a.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
