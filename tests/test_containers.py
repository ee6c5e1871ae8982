"""Module utilities (ModuleList, ModuleDict, apply, named_*, add_module, requires_grad_, clip_grad_norm_)
and the DAG containers (Concat, Join) against PyTorch and finite differences."""

import numpy as np
import pytest

import cnnkit
from cnnkit import nn, optim
from tolerance import assert_close


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ----------------------------------------------------------------------------
# ModuleList / ModuleDict / traversal
# ----------------------------------------------------------------------------


def _holder(ns, base):
    """A module holding a ModuleList and a ModuleDict, built from cnnkit.nn or torch.nn (``ns``)."""
    m = base()
    m.blocks = ns.ModuleList([ns.Linear(4, 4), ns.ReLU(), ns.Linear(4, 3)])
    m.heads = ns.ModuleDict({"cls": ns.Linear(3, 2), "aux": ns.Linear(3, 1, bias=False)})
    return m


def test_module_list_and_dict_state_dict_keys_match_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = _holder(nn, nn.Module), _holder(torch.nn, torch.nn.Module)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [n for n, _ in ours.blocks.named_children()] == ["0", "1", "2"]


def test_module_list_behaves_like_a_list():
    a, b, c = nn.Linear(1, 1), nn.ReLU(), nn.Tanh()
    ml = nn.ModuleList([a])
    ml.append(b)
    ml += [c]
    assert len(ml) == 3 and ml[0] is a and ml[-1] is c and list(ml) == [a, b, c]
    assert isinstance(ml[1:], nn.ModuleList) and list(ml[1:]) == [b, c]
    ml.insert(1, nn.Sigmoid())
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2"] and ml[1] is b
    ml[0] = a
    assert list(ml.state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(IndexError, match="out of range"):
        ml[3]
    with pytest.raises(TypeError, match="Module"):
        ml.append(np.zeros(3))
    with pytest.raises(TypeError, match="iterable"):
        ml.extend(nn.ReLU())


def test_module_dict_behaves_like_a_dict():
    md = nn.ModuleDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())])
    md["fc"] = nn.Linear(2, 2)
    assert list(md) == ["conv", "act", "fc"] and "act" in md and len(md) == 3
    assert list(md.state_dict()) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    md.pop("act")
    del md["conv"]
    assert list(md.keys()) == ["fc"]
    with pytest.raises(KeyError, match="contain"):
        md["a.b"] = nn.ReLU()
    with pytest.raises(TypeError, match="Module"):
        md["x"] = 3


def test_apply_visits_children_first_then_self():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]

    def init(m):
        if isinstance(m, nn.Linear):
            m.weight.data[...] = 0.5

    model.apply(init)
    assert all((p.data == 0.5).all() for name, p in model.named_parameters() if name.endswith("weight"))


def test_shared_modules_are_listed_once_but_saved_under_every_path():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]
    assert len(list(model.named_modules(remove_duplicate=False))) == 4
    assert [n for n, _ in model.named_children()] == ["0", "1"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(list(model.parameters())) == 2


def test_add_module():
    m = nn.Module()
    m.add_module("body", nn.Linear(2, 2))
    m.register_module("skip", None)
    assert [n for n, _ in m.named_children()] == ["body"] and m.body is m._modules["body"]
    assert list(m.state_dict()) == ["body.weight", "body.bias"]
    with pytest.raises(KeyError, match="contain"):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(TypeError, match="str"):
        m.add_module(1, nn.ReLU())
    with pytest.raises(TypeError, match="Module subclass"):
        m.add_module("x", "relu")
    m.plain = 3
    with pytest.raises(KeyError, match="already exists"):
        m.add_module("plain", nn.ReLU())


def test_parameter_numel_and_counts():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(10, 5))
    assert [p.numel() for p in model.parameters()] == [8 * 3 * 9, 8, 50, 5]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 279


# ----------------------------------------------------------------------------
# requires_grad_: fine-tuning
# ----------------------------------------------------------------------------


def _finetune_model():
    cnnkit.manual_seed(4)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def test_frozen_conv_does_not_move_while_the_rest_trains():
    model = _finetune_model()
    frozen = model[2]
    assert frozen.requires_grad_(False) is frozen
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, False, True, True]
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01, l1_decay=0.01)
    crit = nn.CrossEntropyLoss()
    x, y = _rand(8, 2, 6, 6), np.arange(8) % 5
    for _ in range(3):
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        assert frozen.weight.grad is None and frozen.bias.grad is None
        opt.step()
    for name, p in model.named_parameters():
        if name.startswith("2."):
            np.testing.assert_array_equal(p.data, before[name])
        else:
            assert not np.array_equal(p.data, before[name]), f"{name} did not train"


def test_frozen_layer_still_passes_the_input_gradient():
    frozen, trainable = _finetune_model(), _finetune_model()
    frozen[2].requires_grad_(False)
    x, g = _rand(2, 2, 6, 6, seed=1), _rand(2, 5, seed=2)
    frozen(x)
    trainable(x)
    np.testing.assert_array_equal(frozen.backward(g), trainable.backward(g))
    np.testing.assert_array_equal(frozen[0].weight.grad, trainable[0].weight.grad)
    frozen.requires_grad_()
    assert all(p.requires_grad for p in frozen.parameters())


# ----------------------------------------------------------------------------
# clip_grad_norm_
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf"), "inf", 0.5])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s)) for s in [(3, 4), (5,), (2, 2, 2)]]
    params.append(nn.Parameter(np.zeros(2)))  # no grad: skipped
    tparams = [torch.nn.Parameter(torch.tensor(p.data)) for p in params]
    for p, t in zip(params[:3], tparams):
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
        t.grad = torch.tensor(p.grad)
    total = nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(float(expected), rel=1e-6)
    for p, t in zip(params[:3], tparams):
        theirs = t.grad.numpy().astype(np.float64)
        assert_close(p.grad, theirs, np.abs(theirs), 1, "clip_grad_norm_ vs torch", c=16)
    assert params[3].grad is None


def test_clip_grad_norm_by_hand_and_edge_cases():
    p = nn.Parameter(np.zeros(2))
    assert nn.utils.clip_grad_norm_([p], 1.0) == 0.0  # nothing has a gradient
    p.grad = np.array([3.0, 4.0], np.float32)
    assert nn.utils.clip_grad_norm_(p, 1.0) == pytest.approx(5.0)  # one parameter, not a list
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-5)
    assert nn.utils.clip_grad_norm_(p, 10.0) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-5)  # under the limit: unchanged
    p.grad = np.array([np.nan, 1.0], np.float32)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert np.isnan(nn.utils.clip_grad_norm_(p, 1.0)) and np.isnan(p.grad).all()
    with pytest.raises(TypeError, match="max_norm"):
        nn.utils.clip_grad_norm_(p, "1")


def test_clip_grad_value():
    p = nn.Parameter(np.zeros(3))
    p.grad = np.array([-2.0, 0.5, 3.0], np.float32)
    nn.utils.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad, [-1.0, 0.5, 1.0])


# ----------------------------------------------------------------------------
# Concat and Join: the DAG shapes
# ----------------------------------------------------------------------------


def _branches(ns):
    """Three branches of different widths from one 2-channel input (cnnkit.nn or torch.nn)."""
    return (ns.Conv2d(2, 3, 1), ns.Sequential(ns.Conv2d(2, 2, 3, padding=1), ns.Tanh()),
            ns.Sequential(ns.AvgPool2d(3, 1, padding=1), ns.Conv2d(2, 1, 1, bias=False)))


def _columns(ns):
    """FractalNet-style columns of different depths with one output shape."""
    return (ns.Conv2d(2, 3, 3, padding=1),
            ns.Sequential(ns.Conv2d(2, 3, 3, padding=1), ns.Tanh(), ns.Conv2d(3, 3, 3, padding=1)))


DAGS = [
    ("Concat", lambda: nn.Concat(*_branches(nn)), (2, 2, 5, 5)),
    ("Concat-last-dim", lambda: nn.Concat(nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 2), nn.Tanh()), dim=-1),
     (3, 4)),
    ("Dense", lambda: nn.Sequential(nn.Concat(nn.Identity(), nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh())),
                                    nn.Concat(nn.Identity(), nn.Conv2d(4, 2, 3, padding=1))), (2, 2, 4, 4)),
    ("Join-mean", lambda: nn.Join(*_columns(nn)), (2, 2, 5, 5)),
    ("Join-sum", lambda: nn.Join(*_columns(nn), reduction="sum"), (2, 2, 5, 5)),
    ("Residual-of-Concat", lambda: nn.Residual(nn.Concat(nn.Conv2d(2, 1, 3, padding=1), nn.Tanh()),
                                                       nn.Conv2d(2, 3, 1)), (2, 2, 4, 4)),
]


@pytest.mark.parametrize("name,make,shape", DAGS, ids=[d[0] for d in DAGS])
def test_dag_gradients_match_finite_differences(name, make, shape):
    cnnkit.manual_seed(5)
    ok, worst = cnnkit.gradcheck(make(), _rand(*shape, seed=3), eps=1e-2, samples=30, tolerance=2e-2)
    assert ok, f"{name}: {worst}"


def _compare_with_twin(torch, ours, theirs, x):
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    theirs = theirs.double()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    expected = theirs(xt)
    out = ours(x)
    g = _rand(*out.shape, seed=9)
    expected.backward(torch.tensor(g, dtype=torch.float64))
    dx = ours.backward(g)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-4, atol=1e-5 * np.abs(out).max())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5 * np.abs(dx).max())
    tgrads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        want = tgrads[name].grad.numpy()
        np.testing.assert_allclose(p.grad, want, rtol=1e-4, atol=1e-5 * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize("kind", ["concat", "join-mean", "join-sum", "dense"])
def test_dags_match_torch_twins(kind):
    torch = pytest.importorskip("torch")
    import torch_twins

    t = torch.nn
    if kind == "concat":
        ours, theirs = nn.Concat(*_branches(nn)), torch_twins.concat(torch, *_branches(t))
    elif kind == "dense":
        ours = nn.Sequential(nn.Concat(nn.Identity(), nn.Conv2d(2, 3, 3, padding=1)),
                             nn.Concat(nn.Identity(), nn.Sequential(nn.ReLU(), nn.Conv2d(5, 2, 1))))
        theirs = t.Sequential(torch_twins.concat(torch, t.Identity(), t.Conv2d(2, 3, 3, padding=1)),
                              torch_twins.concat(torch, t.Identity(), t.Sequential(t.ReLU(), t.Conv2d(5, 2, 1))))
    else:
        reduction = kind.split("-")[1]
        ours, theirs = nn.Join(*_columns(nn), reduction=reduction), torch_twins.join(torch, *_columns(t),
                                                                                    reduction=reduction)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _compare_with_twin(torch, ours, theirs, _rand(3, 2, 6, 6, seed=4))


def test_concat_and_join_route_the_gradient_by_hand():
    cat = nn.Concat(nn.Identity(), nn.Identity(), nn.Identity(), dim=2)
    x = _rand(1, 2, 3)
    y = cat(x)
    np.testing.assert_array_equal(y, np.concatenate([x, x, x], axis=2))
    g = np.arange(y.size, dtype=np.float32).reshape(y.shape)
    np.testing.assert_array_equal(cat.backward(g), g[:, :, 0:3] + g[:, :, 3:6] + g[:, :, 6:9])
    mean = nn.Join(nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity())
    np.testing.assert_array_equal(mean(x), x)
    np.testing.assert_array_equal(mean.backward(g[:, :, :3]), g[:, :, :3])
    total = nn.Join(nn.Identity(), nn.Identity(), reduction="sum")
    np.testing.assert_array_equal(total(x), 2 * x)
    assert total.backward(np.ones_like(x), input_grad=False) is None


def test_dag_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one branch"):
        nn.Concat()
    with pytest.raises(TypeError, match="branch 1"):
        nn.Join(nn.ReLU(), lambda x: x)
    with pytest.raises(ValueError, match="reduction"):
        nn.Join(nn.ReLU(), reduction="max")
    with pytest.raises(ValueError, match=r"except along dim 1.*\(2, 3, 4, 4\).*\(2, 3, 2, 2\)"):
        nn.Concat(nn.Identity(), nn.MaxPool2d(2))(_rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="out of range"):
        nn.Concat(nn.Identity(), dim=4)(_rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="one shape"):
        nn.Join(nn.Identity(), nn.MaxPool2d(2))(_rand(2, 3, 4, 4))
