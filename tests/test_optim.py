"""Optimizers and schedulers: hand-computed steps, a float64 oracle, torch.optim when installed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import _C, optim
from tolerance import assert_close


class Param:
    """The interface cnnkit.nn.Parameter has: data, grad, requires_grad."""

    def __init__(self, data, requires_grad=True):
        self.data = np.array(data, dtype=np.float32)
        self.grad = None
        self.requires_grad = requires_grad


# ----------------------------------------------------------------------------
# float64 oracle: the published update rules, written independently of optim.py.
# Each returns the amount subtracted from the parameter.
# ----------------------------------------------------------------------------


def ref_sgd(p, g, s, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
    g = g + weight_decay * p
    if momentum:
        s["buf"] = g.copy() if "buf" not in s else momentum * s["buf"] + (1 - dampening) * g
        g = g + momentum * s["buf"] if nesterov else s["buf"]
    return lr * g


def ref_adam(p, g, s, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    s["t"] = t = s.get("t", 0) + 1
    decay = lr * weight_decay * p if decoupled else 0
    if not decoupled:
        g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    v = s["v"]
    if amsgrad:
        s["vmax"] = v = np.maximum(s.get("vmax", 0), v)
    m_hat, v_hat = s["m"] / (1 - b1**t), v / (1 - b2**t)
    return decay + lr * m_hat / (np.sqrt(v_hat) + eps)


def ref_adamw(p, g, s, weight_decay=1e-2, **kw):
    return ref_adam(p, g, s, weight_decay=weight_decay, decoupled=True, **kw)


def ref_rmsprop(p, g, s, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
    g = g + weight_decay * p
    s["sq"] = alpha * s.get("sq", 0) + (1 - alpha) * g * g
    var = s["sq"]
    if centered:
        s["avg"] = alpha * s.get("avg", 0) + (1 - alpha) * g
        var = var - s["avg"] ** 2
    denom = np.sqrt(var) + eps
    if momentum:
        s["buf"] = momentum * s.get("buf", 0) + g / denom
        return lr * s["buf"]
    return lr * g / denom


def ref_adagrad(p, g, s, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
    s["t"] = t = s.get("t", 0) + 1
    g = g + weight_decay * p
    s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s["sum"]) + eps)


def ref_adadelta(p, g, s, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0):
    g = g + weight_decay * p
    s["sq"] = rho * s.get("sq", 0) + (1 - rho) * g * g
    delta = np.sqrt(s.get("acc", 0) + eps) / np.sqrt(s["sq"] + eps) * g
    s["acc"] = rho * s.get("acc", 0) + (1 - rho) * delta * delta
    return lr * delta


REFS = {"SGD": ref_sgd, "Adam": ref_adam, "AdamW": ref_adamw, "RMSprop": ref_rmsprop, "Adagrad": ref_adagrad,
        "Adadelta": ref_adadelta}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, eps=1e-6)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9))),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.001, alpha=0.9, weight_decay=0.1, momentum=0.5)),
    ("RMSprop", dict(lr=0.001, centered=True, momentum=0.9)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-6)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.5, eps=1e-4, weight_decay=0.1)),
]


def run_against_oracle(name, options, shapes, steps, rng):
    """Step cnnkit and the oracle side by side on random grads and compare under the tolerance rule.

    A is |p0| plus the sum of the oracle's step sizes for |grads| and |params|
    (the same op on |inputs|); K is the number of steps.
    """
    params = [Param(rng.standard_normal(shape)) for shape in shapes]
    opt = getattr(optim, name)(params, **options)
    ref = [p.data.astype(np.float64) for p in params]
    ref_state = [{} for _ in params]
    abs_state = [{} for _ in params]
    magnitude = [np.abs(r) for r in ref]
    for _ in range(steps):
        grads = [rng.standard_normal(p.data.shape).astype(np.float32) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for i, g in enumerate(grads):
            g64 = g.astype(np.float64)
            magnitude[i] = magnitude[i] + np.abs(REFS[name](np.abs(ref[i]), np.abs(g64), abs_state[i], **options))
            ref[i] = ref[i] - REFS[name](ref[i], g64, ref_state[i], **options)
    for p, r, a in zip(params, ref, magnitude):
        assert_close(p.data, r, a, steps, f"optim.{name}")
    return params


@pytest.mark.parametrize("name,options", CASES)
def test_matches_float64_oracle(name, options):
    run_against_oracle(name, options, [(3, 4), (5,), ()], steps=12, rng=np.random.default_rng(len(str(options))))


@given(
    lr=st.floats(1e-4, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    nesterov=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sgd_random_options(lr, momentum, weight_decay, nesterov, seed):
    nesterov = nesterov and momentum > 0
    options = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    run_against_oracle("SGD", options, [(2, 3)], steps=5, rng=np.random.default_rng(seed))


@given(
    lr=st.floats(1e-4, 0.1),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    amsgrad=st.booleans(),
    decoupled=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_adam_random_options(lr, beta1, beta2, amsgrad, decoupled, seed):
    options = dict(lr=lr, betas=(beta1, beta2), amsgrad=amsgrad, weight_decay=0.01)
    run_against_oracle("AdamW" if decoupled else "Adam", options, [(2, 3)], steps=5, rng=np.random.default_rng(seed))


# ----------------------------------------------------------------------------
# the fused native step against the NumPy formula it replaces
# ----------------------------------------------------------------------------

NATIVE_CASES = [(name, options) for name, options in CASES if name != "Adadelta"] + [
    ("SGD", dict(lr=0.05, momentum=0.9, l1_decay=0.01)),
    ("Adam", dict(lr=0.01, l1_decay=0.02, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.001, centered=True, momentum=0.5, weight_decay=0.1, l1_decay=0.01)),
    ("Adagrad", dict(lr=0.1, l1_decay=0.05)),
]
# Sizes around the vector widths (8 and 16 floats), one over the native kernel's
# per-thread piece (2^14) so a parameter is split, and a 0-d one.
NATIVE_SHAPES = [(), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (3, 11), (33,), (5, 3301)]


def _step_pair(name, options, steps, rng, shapes=NATIVE_SHAPES, specials=False):
    """The same random run through the native step and through the NumPy formula."""
    start = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    grads = [[rng.standard_normal(shape).astype(np.float32) for shape in shapes] for _ in range(steps)]
    if specials:  # NaN and inf gradients propagate as in the formula, whichever path
        for g in grads[steps // 2]:
            g.reshape(-1)[:3] = np.array([np.nan, np.inf, -np.inf], np.float32)[: g.size]
    runs = []
    for native in (True, False):
        params = [Param(p) for p in start]
        opt = getattr(optim, name)(params, **options)
        if not native:
            opt._native = None  # the per-parameter NumPy path
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g
            with np.errstate(invalid="ignore", over="ignore"):  # NumPy's warnings on NaN and inf
                opt.step()
        runs.append((params, opt))
    return runs


@pytest.mark.parametrize("name,options", NATIVE_CASES)
def test_native_step_equals_numpy_formula_bit_for_bit(isa, threads, name, options):
    (native, opt), (numpy_params, numpy_opt) = _step_pair(name, options, 4, np.random.default_rng(len(str(options))))
    for a, b in zip(native, numpy_params):
        np.testing.assert_array_equal(a.data, b.data)
    for key, state in opt.state_dict()["state"].items():
        want = numpy_opt.state_dict()["state"][key]
        assert state.keys() == want.keys()
        for k in state:
            np.testing.assert_array_equal(state[k], want[k])


@pytest.mark.parametrize("name,options", NATIVE_CASES[::3])
def test_native_step_propagates_nan_and_inf_like_the_formula(isa, name, options):
    (native, _), (numpy_params, _) = _step_pair(name, options, 3, np.random.default_rng(5), specials=True)
    for a, b in zip(native, numpy_params):
        np.testing.assert_array_equal(a.data, b.data)  # NaN positions included
    assert any(np.isnan(p.data).any() for p in native)


@given(
    kind=st.sampled_from(["SGD", "Adam", "RMSprop", "Adagrad"]),
    size=st.sampled_from([1, 7, 8, 9, 15, 16, 17, 31, 33]),
    lr=st.floats(1e-4, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    weight_decay=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 2**32 - 1),
)
def test_native_step_random_options_match_float64_oracle(isa, kind, size, lr, momentum, weight_decay, seed):
    # Not centered RMSprop: its sqrt(s - avg^2) cancels in a way the oracle's A (the rule on |g|, |p|)
    # does not bound; the fixed CASES, the bit-for-bit test and torch cover it.
    options = {"SGD": dict(momentum=momentum, nesterov=momentum > 0),
               "Adam": dict(amsgrad=momentum > 0.6), "RMSprop": dict(momentum=momentum),
               "Adagrad": dict(lr_decay=momentum)}[kind]
    run_against_oracle(kind, dict(lr=lr, weight_decay=weight_decay, **options), [(size,), (2, size)], steps=4,
                       rng=np.random.default_rng(seed))


def test_native_kernel_equals_reference_kernel(isa, threads):
    rng = np.random.default_rng(3)
    p0, g = rng.standard_normal(40001).astype(np.float32), rng.standard_normal(40001).astype(np.float32)
    results = []
    for reference in (False, True):
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for step in (1, 2, 3):
            _C.optimizer_step("adam", [p], [g], [[m, v, None]], [step], [False], lr=0.01, weight_decay=0.1,
                              decoupled=True, reference=reference)
        results.append(p)
    np.testing.assert_array_equal(*results)


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop", "adagrad"])
def test_native_dispatch_picks_the_widest_enabled_kernel(isa, kind):
    want = {"scalar": "threaded", "avx2": "vector_avx2", "avx512": "vector_avx512"}[isa]
    assert _C.optimizer_implementation(kind) == want


def test_float64_and_noncontiguous_parameters_take_the_numpy_path():
    rng = np.random.default_rng(4)
    wide = Param(np.zeros(3))
    wide.data = rng.standard_normal(6)  # float64: updated in its own dtype
    strided = Param(np.zeros(3))
    strided.data = rng.standard_normal((4, 6)).astype(np.float32)[:, ::2]
    plain = Param(rng.standard_normal(5))
    for p in (wide, strided, plain):
        p.grad = np.ones(p.data.shape, p.data.dtype)
    before = [p.data.copy() for p in (wide, strided, plain)]
    optim.Adam([wide, strided, plain], lr=0.1).step()
    for p, b in zip((wide, strided, plain), before):
        assert p.data.dtype == b.dtype
        np.testing.assert_allclose(p.data, b - 0.1, rtol=1e-6, atol=1e-6)


def test_loaded_state_in_another_layout_is_copied_not_refused():
    params = [Param(np.ones((3, 4)))]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    opt.load_state_dict({"state": {0: {"momentum_buffer": np.asfortranarray(np.ones((3, 4)))}},
                         "param_groups": opt.state_dict()["param_groups"]})
    params[0].grad = np.zeros((3, 4), np.float32)
    opt.step()
    np.testing.assert_allclose(params[0].data, 1 - 0.1 * 0.9)


def test_native_step_bad_arguments_raise_named_errors():
    p, g = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        _C.optimizer_step("sgd", [p], [np.zeros(5, np.float32)], [[]], [1], [False], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        _C.optimizer_step("sgd", [p.astype(np.float64)], [g], [[]], [1], [False], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[0\]"):
        _C.optimizer_step("sgd", [p[::2]], [g[::2]], [[]], [1], [False], lr=0.1)
    with pytest.raises(ValueError, match="state buffer 1"):
        _C.optimizer_step("adam", [p], [g], [[np.zeros(4, np.float32)]], [1], [False], lr=0.1)
    with pytest.raises(ValueError, match=r"states\[0\]\[0\]"):
        _C.optimizer_step("adagrad", [p], [g], [[np.zeros(3, np.float32)]], [1], [False], lr=0.1)
    with pytest.raises(ValueError, match="step"):
        _C.optimizer_step("adagrad", [p], [g], [[np.zeros(4, np.float32)]], [0], [False], lr=0.1)
    with pytest.raises(ValueError, match="fresh"):
        _C.optimizer_step("adagrad", [p], [g], [[np.zeros(4, np.float32)]], [1], [True], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        _C.optimizer_step("sgd", [p], [g], [[]], [1], [False], lr=float("nan"))
    with pytest.raises(ValueError, match="beta"):
        _C.optimizer_step("adam", [p], [g], [[g.copy(), g.copy()]], [1], [False], lr=0.1, beta1=1.0)
    with pytest.raises(ValueError, match="one entry per parameter"):
        _C.optimizer_step("sgd", [p], [g, g], [[]], [1], [False], lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        _C.optimizer_step("lion", [p], [g], [[]], [1], [False], lr=0.1)
    readonly = np.zeros(4, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\]"):
        _C.optimizer_step("sgd", [readonly], [g], [[]], [1], [False], lr=0.1)


# Values worked out by hand with p0 = 1 and a constant gradient 1 (2 steps).
HAND = [
    ("SGD", dict(lr=0.1), 1 - 0.1 - 0.1),
    # buffer 1, then 0.9 * 1 + 1 = 1.9
    ("SGD", dict(lr=0.1, momentum=0.9), 1 - 0.1 * 1 - 0.1 * 1.9),
    # steps g + 0.9 * buf: 1 + 0.9 = 1.9, then 1 + 0.9 * 1.9 = 2.71
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), 1 - 0.19 - 0.271),
    # bias-corrected moments are exactly 1 for a constant gradient
    ("Adam", dict(lr=0.1), 1 - 2 * 0.1 / (1 + 1e-8)),
    # decay first: p * (1 - 0.1 * 0.5), then the Adam step
    ("AdamW", dict(lr=0.1, weight_decay=0.5), (1 * 0.95 - 0.1 / (1 + 1e-8)) * 0.95 - 0.1 / (1 + 1e-8)),
    # square averages 0.01 then 0.0199
    ("RMSprop", dict(lr=0.01), 1 - 0.01 / (0.1 + 1e-8) - 0.01 / (0.0199**0.5 + 1e-8)),
    # sums 1 then 2; the second step's lr is 0.1 / (1 + 0.5)
    ("Adagrad", dict(lr=0.1, lr_decay=0.5), 1 - 0.1 / (1 + 1e-10) - 0.1 / 1.5 / (2**0.5 + 1e-10)),
]


@pytest.mark.parametrize("name,options,expected", HAND)
def test_two_steps_by_hand(name, options, expected):
    p = Param([1.0])
    opt = getattr(optim, name)([p], **options)
    for _ in range(2):
        p.grad = np.ones(1, dtype=np.float32)
        opt.step()
    assert_close(p.data, [expected], 1.0, 2, f"optim.{name}")


@pytest.mark.parametrize("name,options", CASES)
def test_matches_torch(name, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (6,)]
    params = [Param(rng.standard_normal(s)) for s in shapes]
    tparams = [torch.nn.Parameter(torch.tensor(p.data)) for p in params]
    opt = getattr(optim, name)(params, **options)
    topt = getattr(torch.optim, name)(tparams, **options)
    magnitude = [np.abs(p.data).astype(np.float64) for p in params]
    steps = 15
    for _ in range(steps):
        before = [p.data.copy() for p in params]
        for p, t in zip(params, tparams):
            p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
            t.grad = torch.tensor(p.grad)
        opt.step()
        topt.step()
        magnitude = [m + np.abs(p.data - b) for m, p, b in zip(magnitude, params, before)]
    for p, t, m in zip(params, tparams, magnitude):
        # Both sides round in float32, so allow twice one side's bound.
        assert_close(p.data, t.detach().numpy().astype(np.float64), m, steps, f"optim.{name} vs torch", c=16)


@pytest.mark.parametrize("options", [dict(), dict(lr=0.3, rho=0.95, eps=1e-3, weight_decay=0.05)])
def test_adadelta_matches_torch_step_by_step(options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    p = Param(rng.standard_normal((5, 4)))
    t = torch.nn.Parameter(torch.tensor(p.data))
    opt, topt = optim.Adadelta([p], **options), torch.optim.Adadelta([t], **options)
    magnitude = np.abs(p.data).astype(np.float64)
    for step in range(1, 31):
        before = p.data.copy()
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
        t.grad = torch.tensor(p.grad)
        opt.step()
        topt.step()
        magnitude += np.abs(p.data - before)
        assert_close(p.data, t.detach().numpy().astype(np.float64), magnitude, step, "optim.Adadelta vs torch", c=16)
    for key in ("square_avg", "acc_delta"):
        theirs = topt.state[t][key].numpy().astype(np.float64)
        assert_close(opt.state_dict()["state"][0][key], theirs, np.abs(theirs), 30, f"Adadelta {key}", c=16)
    assert {k: opt.defaults[k] for k in ("lr", "rho", "eps", "weight_decay")} == {
        k: topt.defaults[k] for k in ("lr", "rho", "eps", "weight_decay")}


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"])
def test_l1_decay_adds_the_sign_of_the_weights_to_the_gradient(name):
    """l1_decay=c steps exactly as the same optimizer fed grad + c * sign(p) (zeros stay put)."""
    rng = np.random.default_rng(3)
    start = rng.standard_normal((3, 4)).astype(np.float32)
    start[0, 0] = 0.0
    a, b = Param(start), Param(start)
    opt_a = getattr(optim, name)([a], lr=0.01, l1_decay=0.3)
    opt_b = getattr(optim, name)([b], lr=0.01)
    for _ in range(5):
        g = rng.standard_normal(start.shape).astype(np.float32)
        g[0, 0] = 0.0
        a.grad = g
        b.grad = g + np.float32(0.3) * np.sign(b.data)
        opt_a.step()
        opt_b.step()
        np.testing.assert_array_equal(a.data, b.data)
    assert a.data[0, 0] == 0.0 and opt_a.param_groups[0]["l1_decay"] == 0.3


def test_l1_decay_drives_weights_without_signal_to_zero_faster_than_l2():
    p_l1, p_l2 = Param(np.full(4, 0.5)), Param(np.full(4, 0.5))
    opt_l1 = optim.SGD([p_l1], lr=0.1, l1_decay=0.5)
    opt_l2 = optim.SGD([p_l2], lr=0.1, weight_decay=0.5)
    for _ in range(10):
        p_l1.grad = np.zeros(4, np.float32)
        p_l2.grad = np.zeros(4, np.float32)
        opt_l1.step()
        opt_l2.step()
    # L1 subtracts a constant 0.05 per step (reaching ~0 after 10), L2 shrinks by 5% per step.
    assert np.all(np.abs(p_l1.data) < 1e-6) and np.all(p_l2.data > 0.29)


def test_l1_decay_is_validated_and_absent_from_torch_state_dicts():
    with pytest.raises(ValueError, match="l1_decay"):
        optim.SGD([Param([1.0])], l1_decay=-1)
    opt = optim.Adam([Param([1.0])], l1_decay=0.1)
    saved = opt.state_dict()
    del saved["param_groups"][0]["l1_decay"]
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["l1_decay"] == 0.0


# ----------------------------------------------------------------------------
# parameters, groups and validation
# ----------------------------------------------------------------------------


def test_updates_in_place_and_skips_frozen_and_gradless():
    live, frozen, gradless = Param([1.0, 2.0]), Param([3.0], requires_grad=False), Param([4.0])
    data = live.data
    frozen.grad = np.ones(1, np.float32)
    live.grad = np.ones(2, np.float32)
    opt = optim.Adam([live, frozen, gradless], lr=0.1)
    opt.step()
    assert live.data is data and np.all(data < [1.0, 2.0])
    assert frozen.data[0] == 3.0 and gradless.data[0] == 4.0
    assert list(opt.state_dict()["state"]) == [0]


def test_param_groups_override_defaults():
    a, b = Param([1.0]), Param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    a.grad = b.grad = np.ones(1, np.float32)
    opt.step()
    assert_close(a.data, [0.9], 1.0, 1, "optim.SGD")
    assert_close(b.data, [0.5], 1.0, 1, "optim.SGD")
    c = Param([2.0])
    opt.add_param_group({"params": [c], "momentum": 0.9})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.9


def test_zero_grad():
    p = Param([1.0])
    p.grad = np.ones(1, np.float32)
    opt = optim.SGD([p])
    opt.zero_grad()
    assert p.grad is None
    grad = p.grad = np.ones(1, np.float32)
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and grad[0] == 0


def test_step_returns_closure_loss():
    p = Param([1.0])

    def closure():
        p.grad = np.full(1, 2.0, np.float32)
        return 3.5

    assert optim.SGD([p], lr=0.25).step(closure) == 3.5
    assert p.data[0] == 0.5


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate"),
        (lambda p: optim.SGD(p, momentum=-0.1), "Invalid momentum value"),
        (lambda p: optim.SGD(p, weight_decay=-1), "Invalid weight_decay value"),
        (lambda p: optim.SGD(p, nesterov=True), "Nesterov momentum requires"),
        (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
        (lambda p: optim.Adam(p, betas=(0.9,)), "betas"),
        (lambda p: optim.AdamW(p, eps=-1e-8), "Invalid epsilon value"),
        (lambda p: optim.Adam(p, lr=float("nan")), "Invalid learning rate"),
        (lambda p: optim.RMSprop(p, alpha=-0.5), "Invalid alpha value"),
        (lambda p: optim.Adagrad(p, lr_decay=-1), "Invalid lr_decay value"),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-1), "Invalid initial_accumulator_value"),
        (lambda p: optim.SGD([{"params": p, "lr": -2}]), "Invalid learning rate"),
        (lambda p: optim.SGD([]), "empty parameter list"),
        (lambda p: optim.SGD(p + p), "more than once"),
        (lambda p: optim.SGD([{"lr": 0.1}]), "'params'"),
    ],
)
def test_invalid_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make([Param([1.0])])


@pytest.mark.parametrize(
    "params",
    [Param([1.0]), {Param([1.0])}, np.zeros(3, np.float32), [np.zeros(3, np.float32)], [Param([1])]],
    ids=["single-param", "set", "ndarray", "list-of-ndarray", "int-data"],
)
def test_invalid_params_raise_type_error(params):
    if isinstance(params, list) and isinstance(params[0], Param):
        params[0].data = np.array([1])
    with pytest.raises(TypeError):
        optim.SGD(params)


def test_lr_type_is_checked():
    with pytest.raises(TypeError, match="learning rate"):
        optim.SGD([Param([1.0])], lr="0.1")


def test_bad_grad_is_reported_with_its_index():
    a, b = Param([1.0]), Param([1.0, 2.0])
    opt = optim.SGD([a, b])
    a.grad = np.ones(1, np.float32)
    b.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="parameter 1 has shape"):
        opt.step()
    b.grad = np.ones(2, bool)
    with pytest.raises(TypeError, match="parameter 1"):
        opt.step()


# ----------------------------------------------------------------------------
# state dicts
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,options", [c for c in CASES if c[1]])
def test_state_dict_round_trip_continues_identically(name, options):
    rng = np.random.default_rng(3)
    start = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(s.shape).astype(np.float32) for s in start] for _ in range(6)]
    first = [Param(s) for s in start]
    opt = getattr(optim, name)([{"params": first[:1]}, {"params": first[1:], "lr": 0.02}], **options)

    def run(opt, params, steps):
        for g in steps:
            for p, gi in zip(params, g):
                p.grad = gi
            opt.step()

    run(opt, first, grads[:3])
    saved = opt.state_dict()
    snapshot = {i: {k: np.copy(v) for k, v in s.items()} for i, s in saved["state"].items()}
    second = [Param(p.data) for p in first]
    resumed = getattr(optim, name)([{"params": second[:1]}, {"params": second[1:]}], lr=0.5)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == 0.02
    run(opt, first, grads[3:])
    run(resumed, second, grads[3:])
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.data, b.data)
    # state_dict() returned copies: training on did not change them.
    for i, s in saved["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, snapshot[i][k])


def test_state_dict_layout_matches_pytorch():
    a, b = Param([1.0]), Param([2.0, 3.0])
    opt = optim.Adam([a, b], amsgrad=True)
    a.grad = np.ones(1, np.float32)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 1
    group = sd["param_groups"][0]
    assert group["params"] == [0, 1] and group["betas"] == (0.9, 0.999) and group["lr"] == 1e-3


def test_load_state_dict_checks_before_changing_anything():
    a, b = Param([1.0]), Param([2.0, 3.0])
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = np.ones(1, np.float32), np.ones(2, np.float32)
    opt.step()
    good = opt.state_dict()
    other = optim.SGD([Param([0.0])], lr=0.3)
    with pytest.raises(ValueError, match="parameter group has 2 parameters"):
        other.load_state_dict(good)
    bad = opt.state_dict()
    bad["state"][1]["momentum_buffer"] = np.zeros(5, np.float32)
    bad["param_groups"][0]["lr"] = 0.7
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1
    assert opt.state_dict()["state"][1]["momentum_buffer"].shape == (2,)
    with pytest.raises(ValueError, match="groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})


def test_loads_a_torch_state_dict():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    p = Param(rng.standard_normal((3, 3)))
    t = torch.nn.Parameter(torch.tensor(p.data))
    topt = torch.optim.Adam([t], lr=0.01, amsgrad=True)
    for _ in range(3):
        t.grad = torch.tensor(rng.standard_normal((3, 3)).astype(np.float32))
        topt.step()
    p.data[...] = t.detach().numpy()
    opt = optim.Adam([p])
    opt.load_state_dict(topt.state_dict())
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["amsgrad"]
    before = p.data.copy()
    for _ in range(3):
        g = rng.standard_normal((3, 3)).astype(np.float32)
        p.grad, t.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    assert_close(p.data, t.detach().numpy().astype(np.float64), np.abs(before) + 0.1, 3, "optim.Adam vs torch", c=16)


# ----------------------------------------------------------------------------
# schedulers
# ----------------------------------------------------------------------------


def lrs_over(scheduler_factory, epochs, groups=1):
    params = [Param([1.0]) for _ in range(groups)]
    opt = optim.SGD([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(params)])
    sched = scheduler_factory(opt)
    seen = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == seen[-1]
    return seen


def test_step_lr():
    seen = [lr[0] for lr in lrs_over(lambda o: optim.StepLR(o, step_size=2, gamma=0.5), 5)]
    np.testing.assert_allclose(seen, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)


def test_exponential_lr():
    seen = [lr[0] for lr in lrs_over(lambda o: optim.ExponentialLR(o, gamma=0.9), 3)]
    np.testing.assert_allclose(seen, [0.1, 0.09, 0.081, 0.0729], rtol=1e-15)


def test_lambda_lr_per_group():
    seen = lrs_over(lambda o: optim.LambdaLR(o, [lambda e: 1.0 / (e + 1), lambda e: 0.5**e]), 2, groups=2)
    np.testing.assert_allclose(seen, [[0.1, 0.2], [0.05, 0.1], [0.1 / 3, 0.05]], rtol=1e-15)


@pytest.mark.parametrize(
    "name,args",
    [("StepLR", (3, 0.3)), ("ExponentialLR", (0.8,)), ("LambdaLR", (lambda e: 1 / (1 + e),))],
)
def test_schedulers_match_torch(name, args):
    torch = pytest.importorskip("torch")
    mine = lrs_over(lambda o: getattr(optim, name)(o, *args), 8)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, *args)
    expected = [tsched.get_last_lr()]
    for _ in range(8):
        topt.step()
        tsched.step()
        expected.append(tsched.get_last_lr())
    np.testing.assert_allclose(mine, expected, rtol=1e-12)


def test_scheduler_state_dict_round_trip():
    opt = optim.SGD([Param([1.0])], lr=0.1)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 3
    opt2 = optim.SGD([Param([1.0])], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2 = optim.StepLR(opt2, step_size=5, gamma=0.9)
    sched2.load_state_dict(saved)
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.025]
    lam = optim.LambdaLR(opt, lambda e: 1.0)
    assert "lr_lambdas" not in lam.state_dict()


def test_scheduler_invalid_arguments():
    opt = optim.SGD([Param([1.0])])
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="step_size"):
        optim.StepLR(opt, step_size=1.5)
    with pytest.raises(TypeError, match="not a cnnkit optimizer"):
        optim.ExponentialLR(object(), 0.9)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas, but got 2"):
        optim.LambdaLR(opt, [lambda e: 1, lambda e: 2])
    with pytest.raises(TypeError, match="callable"):
        optim.LambdaLR(opt, 0.5)
