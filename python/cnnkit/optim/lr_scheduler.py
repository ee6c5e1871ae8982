"""Learning-rate schedules shaped like ``torch.optim.lr_scheduler``: same names, arguments and values.

Every schedule but :class:`ReduceLROnPlateau` and :class:`OneCycleLR` is stepped
once per epoch; :class:`OneCycleLR` once per batch; :class:`ReduceLROnPlateau`
once per validation with the metric it watches.
"""

import math

from ..functional import _float, _int, _positive_int
from .optimizer import Optimizer, _at_least_zero

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR",
    "ReduceLROnPlateau", "LambdaLR",
]


class LRScheduler:
    """Base class: sets every group's ``"lr"`` from :meth:`get_lr` at each :meth:`step`.

    Call ``step()`` once per epoch, after the epoch's optimizer steps. As in
    PyTorch, constructing a scheduler performs step 0 (``last_epoch`` becomes 0),
    and each group remembers its first learning rate as ``"initial_lr"``.
    """

    _unsaved = ("optimizer",)

    def __init__(self, optimizer):
        self.optimizer = _optimizer(optimizer)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def get_lr(self):
        """The learning rate of every group at ``self.last_epoch``."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set the groups' learning rates."""
        self.last_epoch += 1
        lrs = [float(lr) for lr in self.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def get_last_lr(self):
        """The learning rates the last :meth:`step` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer (and, for :class:`LambdaLR`, the functions)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items() if k not in self._unsaved}

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`'s result; keys this scheduler does not have are ignored."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        mine = self.state_dict()
        for key, value in state_dict.items():
            if key in mine:
                setattr(self, key, list(value) if isinstance(value, list) else value)


def _optimizer(obj):
    if not isinstance(obj, Optimizer):
        raise TypeError(f"{type(obj).__name__} is not a cnnkit optimizer")
    return obj


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _at_least_zero(gamma, "gamma")
        super().__init__(optimizer)

    def get_lr(self):
        # Relative to the current lr, as PyTorch does, so manual changes persist.
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch."""

    def __init__(self, optimizer, gamma):
        self.gamma = _at_least_zero(gamma, "gamma")
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class LambdaLR(LRScheduler):
    """Learning rate = initial lr * ``lr_lambda(epoch)``.

    ``lr_lambda`` is a function of the epoch, or a list of them, one per group.
    The functions are not part of :meth:`state_dict`.
    """

    _unsaved = ("optimizer", "lr_lambdas")

    def __init__(self, optimizer, lr_lambda):
        groups = _optimizer(optimizer).param_groups
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(groups):
                raise ValueError(f"Expected {len(groups)} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(groups)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda must be callable, got {type(fn).__name__}")
        super().__init__(optimizer)

    def get_lr(self):
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each epoch listed in ``milestones``
    (twice at an epoch listed twice)."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones = sorted(_int(m, "milestones") for m in milestones)
        self.gamma = _at_least_zero(gamma, "gamma")
        super().__init__(optimizer)

    def get_lr(self):
        factor = self.gamma ** self.milestones.count(self.last_epoch)
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``, continuing as a
    cosine wave past ``T_max``.

    Computed step by step from the current lr, as PyTorch does, so the values
    agree with PyTorch's to rounding and manual changes to the lr carry over.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _float(eta_min, "eta_min")
        super().__init__(optimizer)

    def get_lr(self):
        groups = self.optimizer.param_groups
        epoch, T, low = self.last_epoch, self.T_max, self.eta_min
        if epoch == 0:
            return [group["lr"] for group in groups]
        if (epoch - 1 - T) % (2 * T) == 0:
            # At the wave's trough the ratio below would divide by 1 + cos(pi) = 0.
            return [group["lr"] + (base - low) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * epoch / T)) / (1 + math.cos(math.pi * (epoch - 1) / T))
        return [ratio * (group["lr"] - low) + low for group in groups]


def _per_group(value, name, optimizer):
    groups = optimizer.param_groups
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(f"expected {len(groups)} values for {name}, got {len(value)}")
        return [_float(v, name) for v in value]
    return [_float(value, name)] * len(groups)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2017), stepped once per batch.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of ``total_steps`` (or ``epochs * steps_per_epoch``), then
    falls to ``initial_lr / final_div_factor``; ``three_phase`` returns to the
    initial lr before the final fall. With ``cycle_momentum`` the momentum (or
    Adam's beta1) moves the opposite way between ``max_momentum`` and
    ``base_momentum``. ``anneal_strategy`` is ``"cos"`` or ``"linear"``.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False):
        optimizer = _optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = _positive_int(total_steps, "total_steps")
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _positive_int(epochs, "epochs") * _positive_int(steps_per_epoch, "steps_per_epoch")
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        pct_start = _float(pct_start, "pct_start")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        # (last step of the phase, lr key it starts from, lr key it ends at, same for momentum)
        up = pct_start * self.total_steps - 1
        last = self.total_steps - 1
        if three_phase:
            self.phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                           (2 * pct_start * self.total_steps - 2, "max_lr", "initial_lr", "base_momentum",
                            "max_momentum"),
                           (last, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self.phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                           (last, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        for group, peak in zip(optimizer.param_groups, _per_group(max_lr, "max_lr", optimizer)):
            group["initial_lr"] = peak / div_factor
            group["max_lr"] = peak
            group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
            self.use_beta1 = "betas" in optimizer.defaults
            for group, high, low in zip(optimizer.param_groups, _per_group(max_momentum, "max_momentum", optimizer),
                                        _per_group(base_momentum, "base_momentum", optimizer)):
                self._set_momentum(group, high)
                group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr_from, lr_to, m_from, m_to) in enumerate(self.phases):
                if step <= end or i == len(self.phases) - 1:
                    pct = (step - start) / (end - start)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m_from], group[m_to], pct))
                    break
                start = end
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` once the watched metric has not improved for ``patience``
    steps; ``step(metric)`` after each validation.

    ``mode`` is ``"min"`` (a loss) or ``"max"`` (an accuracy); an improvement
    must beat the best by ``threshold`` (relative, or absolute with
    ``threshold_mode="abs"``). After a reduction ``cooldown`` steps pass before
    bad steps count again; the lr never goes below ``min_lr`` and changes
    smaller than ``eps`` are skipped.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        self.optimizer = _optimizer(optimizer)
        self.factor = _float(factor, "factor")
        if self.factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown: use 'min' or 'max'")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown: use 'rel' or 'abs'")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.threshold = _float(threshold, "threshold")
        self.patience = _int(patience, "patience")
        self.cooldown = _int(cooldown, "cooldown")
        self.min_lrs = _per_group(min_lr, "min_lr", self.optimizer)
        self.eps = _float(eps, "eps")
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _is_better(self, value):
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * value < sign * self.best * (1.0 - sign * self.threshold)
        return sign * value < sign * self.best - self.threshold

    def step(self, metrics):
        """Record one value of the watched metric and reduce the lr if it has stalled."""
        value = _float(metrics, "metrics") if not hasattr(metrics, "item") else float(metrics.item())
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(group["lr"] * self.factor, floor)
                if group["lr"] - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
