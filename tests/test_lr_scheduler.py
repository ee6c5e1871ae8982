"""cnnkit.optim.lr_scheduler against torch.optim.lr_scheduler over many steps, and its import paths."""

import math

import numpy as np
import pytest

import cnnkit
from cnnkit import optim
from cnnkit.optim.lr_scheduler import StepLR


class Param:
    def __init__(self, data):
        self.data = np.array(data, dtype=np.float32)
        self.grad = None
        self.requires_grad = True


STEPS = 60

SCHEDULES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 40], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.95)),
    ("CosineAnnealingLR", dict(T_max=13)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.01)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1.0 + 0.1 * e))),
    ("OneCycleLR", dict(max_lr=[0.5, 1.0], total_steps=STEPS)),
    ("OneCycleLR", dict(max_lr=0.3, epochs=6, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear",
                        div_factor=10.0, final_div_factor=100.0, three_phase=True)),
]


def _pair(torch, optimizer="SGD", **options):
    """A cnnkit and a torch optimizer with the same two parameter groups."""
    ours = getattr(optim, optimizer)([{"params": [Param([1.0])], "lr": 0.1}, {"params": [Param([2.0])], "lr": 0.2}],
                                     **options)
    theirs = getattr(torch.optim, optimizer)([{"params": [torch.nn.Parameter(torch.ones(1))], "lr": 0.1},
                                              {"params": [torch.nn.Parameter(torch.ones(1))], "lr": 0.2}], **options)
    return ours, theirs


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_schedule_matches_torch_over_many_steps(name, kwargs, optimizer):
    torch = pytest.importorskip("torch")
    opt, topt = _pair(torch, optimizer, **({"momentum": 0.9} if optimizer == "SGD" else {}))
    sched = getattr(optim.lr_scheduler, name)(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    steps = STEPS if name == "OneCycleLR" else 2 * STEPS
    for step in range(steps):
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{name} step {step}")
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        np.testing.assert_allclose(_momenta(opt), _momenta(topt), rtol=1e-12, err_msg=f"momentum, step {step}")
        opt.step()
        topt.step()
        sched.step()
        tsched.step()


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=3, min_lr=[0.02, 0.001]),
    dict(patience=1, threshold=0.05, threshold_mode="abs", min_lr=0.03, eps=1e-3),
    dict(mode="max", patience=0, threshold_mode="abs", threshold=0.0),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    opt, topt = _pair(torch)
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    rng = np.random.default_rng(0)
    # Improving, then noisy plateaus, then a step down and another plateau.
    metrics = np.concatenate([np.linspace(1.0, 0.5, 10), 0.5 + 0.03 * rng.standard_normal(40),
                              0.3 + 0.01 * rng.standard_normal(50)])
    for value in metrics:
        sched.step(float(value))
        tsched.step(float(value))
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
        assert (sched.best, sched.num_bad_epochs, sched.cooldown_counter) == (
            tsched.best, tsched.num_bad_epochs, tsched.cooldown_counter)
    assert sched.get_last_lr() != [0.1, 0.2], "the sequence never triggered a reduction"


def test_reduce_on_plateau_takes_numpy_and_torch_scalars_and_round_trips():
    opt = optim.SGD([Param([1.0])], lr=1.0)
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    sched.step(np.float32(1.0))
    sched.step(np.array(2.0))
    assert sched.get_last_lr() == [0.1]
    again = optim.lr_scheduler.ReduceLROnPlateau(optim.SGD([Param([1.0])], lr=0.1), patience=0)
    again.load_state_dict(sched.state_dict())
    assert again.best == 1.0 and again.last_epoch == 2


def test_import_paths_and_old_names():
    assert cnnkit.optim.lr_scheduler.StepLR is StepLR is optim.StepLR
    for name in ("MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau", "LambdaLR",
                 "LRScheduler"):
        assert getattr(optim, name) is getattr(optim.lr_scheduler, name)


def test_cosine_annealing_closed_form():
    opt = optim.SGD([Param([1.0])], lr=1.0)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.1)
    for epoch in range(1, 17):
        sched.step()
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * epoch / 8)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_one_cycle_needs_momentum_and_stops_after_total_steps():
    with pytest.raises(ValueError, match="momentum"):
        optim.lr_scheduler.OneCycleLR(optim.Adagrad([Param([1.0])]), max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        optim.lr_scheduler.OneCycleLR(optim.SGD([Param([1.0])]), max_lr=0.1)
    sched = optim.lr_scheduler.OneCycleLR(optim.Adagrad([Param([1.0])]), max_lr=0.1, total_steps=3,
                                          cycle_momentum=False)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()


@pytest.mark.parametrize("make,error,match", [
    (lambda o: optim.lr_scheduler.MultiStepLR(o, [2.5]), TypeError, "milestones"),
    (lambda o: optim.lr_scheduler.CosineAnnealingLR(o, 0), ValueError, "T_max"),
    (lambda o: optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=5, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=5, anneal_strategy="exp"), ValueError, "anneal"),
    (lambda o: optim.lr_scheduler.OneCycleLR(o, [0.1, 0.2], total_steps=5), ValueError, "max_lr"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, mode="up"), ValueError, "mode"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, threshold_mode="x"), ValueError, "threshold mode"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, min_lr=[0.1, 0.2]), ValueError, "min_lr"),
])
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make(optim.SGD([Param([1.0])], lr=0.1))
