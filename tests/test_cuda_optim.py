"""CUDA optimizer steps (one fused kernel per parameter tensor): the emulated kernels must equal
cnnkit.optim's float32 arithmetic bit for bit (the host compiler contracts no FMAs) and, like the
GPU kernels (skipped without a device), match test_optim's independent float64 oracle under the
tolerance rule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import optim
from cuda_support import built, emulate, gpu, on_gpu, on_host
from test_optim import CASES, REFS, Param
from tolerance import assert_close

DEVICE_CASES = CASES + [
    ("SGD", dict(lr=0.05, momentum=0.9, l1_decay=0.01)),
    ("Adam", dict(lr=0.01, l1_decay=0.02, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, l1_decay=0.02)),
    ("RMSprop", dict(lr=0.001, centered=True, l1_decay=0.05)),
    ("Adagrad", dict(lr=0.1, l1_decay=0.05)),
    ("Adadelta", dict(lr=0.5, l1_decay=0.05)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(DEVICE_CASES)]


def zeros(on, shape, value=0.0):
    return on["array"](np.full(shape, value, np.float32))


def device_step(on, name, options, p, g, state):
    """One step of optimizer ``name`` through the device kernels, keeping ``state`` as the optimizer
    keeps its own."""
    o = dict(options)
    l1 = o.pop("l1_decay", 0.0)
    shape = tuple(p.shape)
    if name == "SGD":
        momentum = o.get("momentum", 0.0)
        first = "buf" not in state
        if momentum and first:
            state["buf"] = on["poison"](shape)  # the first step writes all of it
        on["run"]("sgd_step", p, g, state.get("buf"), o["lr"], momentum, o.get("dampening", 0.0),
                  o.get("nesterov", False), first, l1, o.get("weight_decay", 0.0))
    elif name in ("Adam", "AdamW"):
        if not state:
            state.update(step=0, m=zeros(on, shape), v=zeros(on, shape))
            if o.get("amsgrad"):
                state["vmax"] = zeros(on, shape)
        state["step"] += 1
        beta1, beta2 = o.get("betas", (0.9, 0.999))
        on["run"]("adam_step", p, g, state["m"], state["v"], state.get("vmax"), state["step"], o.get("lr", 1e-3),
                  beta1, beta2, o.get("eps", 1e-8), o.get("weight_decay", 1e-2 if name == "AdamW" else 0.0),
                  name == "AdamW", l1)
    elif name == "RMSprop":
        if not state:
            state["sq"] = zeros(on, shape)
            if o.get("centered"):
                state["avg"] = zeros(on, shape)
            if o.get("momentum", 0.0) > 0:
                state["buf"] = zeros(on, shape)
        on["run"]("rmsprop_step", p, g, state["sq"], state.get("avg"), state.get("buf"), o.get("lr", 1e-2),
                  o.get("alpha", 0.99), o.get("eps", 1e-8), o.get("momentum", 0.0), l1, o.get("weight_decay", 0.0))
    elif name == "Adadelta":
        if not state:
            state.update(sq=zeros(on, shape), acc=zeros(on, shape))
        on["run"]("adadelta_step", p, g, state["sq"], state["acc"], o.get("lr", 1.0), o.get("rho", 0.9),
                  o.get("eps", 1e-6), l1, o.get("weight_decay", 0.0))
    else:
        if not state:
            state.update(step=0, sum=zeros(on, shape, o.get("initial_accumulator_value", 0.0)))
        state["step"] += 1
        on["run"]("adagrad_step", p, g, state["sum"], state["step"], o.get("lr", 1e-2), o.get("lr_decay", 0.0),
                  o.get("eps", 1e-10), l1, o.get("weight_decay", 0.0))


def run_steps(on, name, options, shape, steps, seed, exact):
    """``steps`` steps on the device kernels beside cnnkit.optim (float32) and test_optim's float64
    oracle (its magnitudes: |p0| plus the oracle's steps on |inputs|, K = steps)."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(shape).astype(np.float32)
    cpu = Param(p0)
    opt = getattr(optim, name)([cpu], **options)
    dev, state = on["array"](p0.copy()), {}
    ref, abs_ref, ref_state, abs_state = p0.astype(np.float64), p0.astype(np.float64), {}, {}
    magnitude = np.abs(ref)
    oracle = {k: v for k, v in options.items() if k != "l1_decay"}
    for _ in range(steps):
        g = rng.standard_normal(shape).astype(np.float32)
        cpu.grad = g
        opt.step()
        device_step(on, name, options, dev, on["array"](g), state)
        if "l1_decay" not in options:
            magnitude = magnitude + np.abs(REFS[name](np.abs(abs_ref), np.abs(g.astype(np.float64)), abs_state,
                                                      **oracle))
            ref = ref - REFS[name](ref, g.astype(np.float64), ref_state, **oracle)
    got = on["back"](dev)
    if exact:
        np.testing.assert_array_equal(got, cpu.data)
    if "l1_decay" not in options:
        assert_close(got, ref, magnitude, steps, f"cuda optim.{name}")
    else:  # the oracle has no l1 term: judged against the float32 optimizer
        np.testing.assert_allclose(got, cpu.data, rtol=1e-5, atol=1e-6)


SHAPES = st.sampled_from([(), (1,), (7,), (255,), (3, 86)])


@built
@pytest.mark.parametrize("name,options", DEVICE_CASES, ids=IDS)
@given(shape=SHAPES, steps=st.integers(1, 6), seed=st.integers(0, 2**31))
@settings(max_examples=15, deadline=None)
def test_emulated_step_equals_cnnkit_optim_and_matches_oracle(name, options, shape, steps, seed):
    run_steps(on_host(), name, options, shape, steps, seed, exact=True)


@built
def test_emulated_step_checks_its_arrays():
    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="grad has 3 elements, the parameter 4"):
        emulate.sgd_step(p, np.zeros(3, np.float32), None, 0.1, 0.0, 0.0, False, True, 0.0, 0.0)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        emulate.sgd_step(p, np.zeros(4, np.float32), None, 0.1, 0.9, 0.0, False, True, 0.0, 0.0)
    with pytest.raises(ValueError, match="step must be >= 1"):
        emulate.adam_step(p, p.copy(), p.copy(), p.copy(), None, 0, 0.1, 0.9, 0.99, 1e-8, 0.0, False, 0.0)
    with pytest.raises(TypeError, match="param must have dtype <f4"):
        emulate.adagrad_step(p.astype(np.float64), p, p.copy(), 1, 0.1, 0.0, 1e-10, 0.0, 0.0)


@gpu
@pytest.mark.parametrize("name,options", DEVICE_CASES, ids=IDS)
@given(shape=SHAPES, steps=st.integers(1, 6), seed=st.integers(0, 2**31))
@settings(max_examples=8, deadline=None)
def test_gpu_step_matches_oracle(name, options, shape, steps, seed):
    run_steps(on_gpu(), name, options, shape, steps, seed, exact=False)
