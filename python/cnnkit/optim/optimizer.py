"""Optimizers with PyTorch's update rules and defaults (schedules are in :mod:`.lr_scheduler`).

A parameter is any object with ``.data`` (a float ndarray, updated in place so
that layers holding it see the new values), ``.grad`` (an ndarray of the same
shape, or None) and ``.requires_grad``. ``step()`` skips parameters whose grad
is None or whose ``requires_grad`` is False.

Each optimizer takes an iterable of parameters or, as in PyTorch, a list of
parameter groups: dicts with ``"params"`` and any options that override the
optimizer's defaults for that group::

    SGD([{"params": body}, {"params": head, "lr": 0.1}], lr=0.01, momentum=0.9)

L1 regularisation: every optimizer takes ``l1_decay`` (keyword, default 0),
cnnkit's addition beside PyTorch's ``weight_decay``. It adds ``l1_decay *
sign(p)``, the subgradient of ``l1_decay * sum(|p|)``, to the gradient before
the update, as ``weight_decay`` adds ``weight_decay * p`` (also in AdamW, whose
weight decay alone is decoupled). An option rather than a loss term because
cnnkit has no autograd: a penalty added to the loss would need its own backward
in every training loop, while the option works in ``cnnkit.train.fit``, the
command line and hand-written loops alike, and a group may set its own value.

Updates are computed in the parameter's dtype (float32) in the same order of
operations as PyTorch's single-tensor CPU implementation, so results agree to
float32 rounding. SGD, Adam, AdamW, RMSprop and Adagrad update all the float32
parameters of a group in one native call (threaded, SIMD); it rounds every
operation as the NumPy formula does, which still updates parameters of other
dtypes, so both give the same bits. ``state_dict()`` has PyTorch's layout: ``{"state": {index:
{...}}, "param_groups": [{..., "params": [index, ...]}]}`` with parameters
numbered in group order, and ``load_state_dict`` accepts a PyTorch optimizer's
state dict (tensors are converted to arrays).

Parameters on a CUDA device (``model.to("cuda")``: CuPy arrays or PyTorch CUDA tensors) are
updated by one fused kernel per parameter tensor from ``cnnkit.cuda.ops_optim`` (``sgd_step``,
``adam_step``, ``rmsprop_step``, ``adagrad_step``, with the arithmetic of the code here; that
module documents their signatures), on state arrays created here as for the CPU. Where no such
kernel exists (Adadelta, or a build without ``ops_optim``) the code here runs on the device
arrays as they are: it is written against the array's namespace (NumPy, CuPy and PyTorch share
the few functions it calls). Optimizer state dicts are NumPy arrays whatever the device, and load
back onto the parameters' device.
"""

import numpy as np

from .. import _C
from ..functional import _float

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"]

# ----------------------------------------------------------------------------
# optimizers
# ----------------------------------------------------------------------------


def _device():
    from ..cuda import _device

    return _device


def _namespace(a):
    """NumPy for NumPy arrays, else the array's own library (CuPy, PyTorch)."""
    return np if type(a) is np.ndarray else _device().namespace(a)


def _on_device(a):
    return type(a) is not np.ndarray and _device().is_cuda_array(a)


def _fused_steps(p):
    """``cnnkit.cuda.ops_optim`` for a parameter on a CUDA device where that module exists, else None."""
    if not _on_device(p.data):
        return None
    try:
        from ..cuda import ops_optim
    except ImportError:
        return None
    return ops_optim


def _is_param(obj):
    return hasattr(obj, "data") and hasattr(obj, "grad") and not isinstance(obj, np.ndarray)


def _at_least_zero(value, what):
    """A real number >= 0; ``what`` completes PyTorch's message "Invalid <what>: <value>"."""
    value = _float(value, what)
    if not value >= 0.0:  # also catches NaN
        raise ValueError(f"Invalid {what}: {value}")
    return value


def _lerp_(start, end, weight):
    """``start`` moved towards ``end`` by ``weight``, in place, with torch.lerp's rounding."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1.0 - weight)


def _native_ready(a):
    """Whether the native step can update ``a`` in place."""
    return a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable and a.flags.aligned


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, state dicts.

    Subclasses define ``_check_options(group)``, which validates and returns a
    group's options, and ``_update(param, grad, state, group)``, which updates
    one parameter in place. Those with a fused native step also set ``_native``
    (its name for ``_C.optimizer_step``) and define ``_native_args(param, state,
    group)``, which prepares the state as ``_update`` would and returns the state
    buffers, the step number and whether the buffers are fresh, and
    ``_native_options(group)``.
    """

    _native = None

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        # Keyed by id(param): parameters need not be hashable, and every
        # parameter with state is held by a group, so ids are not reused.
        self._state = {}
        if _is_param(params) or isinstance(params, (np.ndarray, dict, set, frozenset)):
            raise TypeError(
                f"params must be an iterable of parameters or of parameter-group dicts, got {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of parameters; options it leaves out come from the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = param_group["params"]
        if _is_param(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("a group's params must be an ordered iterable, not a set (the order numbers the state)")
        else:
            params = list(params)
        for p in params:
            if not _is_param(p) or not hasattr(p, "requires_grad"):
                raise TypeError(
                    f"optimizers update objects with .data, .grad and .requires_grad, got {type(p).__name__}"
                )
            if _on_device(p.data):
                if not _device().dtype_name(p.data).startswith("float"):
                    raise TypeError(f"a parameter's .data must be a float array, got {_device().dtype_name(p.data)}")
                continue
            if not isinstance(p.data, np.ndarray) or p.data.dtype.kind != "f":
                raise TypeError(f"a parameter's .data must be a float ndarray, got {type(p.data).__name__}")
            if not p.data.flags.writeable:
                raise ValueError("a parameter's .data must be writeable: it is updated in place")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for p in params:
            if id(p) in seen:
                raise ValueError("some parameters appear more than once in the parameter groups")
            seen.add(id(p))
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        group = self._check_options(group)
        group["params"] = params
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient.

        As in PyTorch, grads become None by default (layers then start a fresh
        gradient on the next backward); ``set_to_none=False`` fills them with
        zeros in place instead.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient.

        ``closure``, if given, is called first (it should recompute the loss and
        the gradients) and its result is returned.
        """
        loss = None if closure is None else closure()
        index = 0
        for group in self.param_groups:
            native = []
            for p in group["params"]:
                if p.grad is not None and p.requires_grad:
                    grad = self._grad(p, index)
                    state = self._state.setdefault(id(p), {})
                    kernels = _fused_steps(p)  # a device parameter's fused kernels
                    if kernels is not None and self._fused(kernels, p, grad, state, group):
                        pass
                    elif self._native is not None and _native_ready(p.data):
                        native.append((p, grad, state))
                    else:
                        if group["l1_decay"] != 0:
                            # The subgradient of l1_decay * |p|; sign(0) = 0 leaves exact zeros at zero.
                            grad = grad + group["l1_decay"] * _namespace(p.data).sign(p.data)
                        self._update(p, grad, state, group)
                index += 1
            if native:
                self._native_step(native, group)
        return loss

    def _fused(self, ops, p, grad, state, group):
        """Update the device parameter ``p`` with ``ops`` (cnnkit.cuda.ops_optim), ``l1_decay``
        included; False where this optimizer has no fused kernel there."""
        return False

    def _native_step(self, batch, group):
        """One native call updating every (param, grad, state) of ``batch``, all in ``group``."""
        states, steps, fresh = [], [], []
        for p, _, state in batch:
            keys, step, is_fresh = self._native_args(p, state, group)
            for key in keys:
                if key is not None and not _native_ready(state[key]):
                    # A loaded state in another layout: our own C-contiguous copy from now on.
                    state[key] = np.array(state[key], dtype=np.float32, order="C")
            states.append([None if key is None else state[key] for key in keys])
            steps.append(step)
            fresh.append(is_fresh)
        _C.optimizer_step(self._native, [p.data for p, _, _ in batch], [g for _, g, _ in batch], states, steps,
                          fresh, **self._native_options(group))

    @staticmethod
    def _grad(p, index):
        if _on_device(p.data):
            return Optimizer._device_grad(p, index)
        grad = np.asarray(p.grad)
        if grad.dtype.kind not in "fiu":
            raise TypeError(f"the grad of parameter {index} must be a float array, got dtype {grad.dtype}")
        if grad.shape != p.data.shape:
            raise ValueError(f"the grad of parameter {index} has shape {grad.shape}, its data has shape {p.data.shape}")
        return grad.astype(p.data.dtype, copy=False)

    @staticmethod
    def _device_grad(p, index):
        device = _device()
        if not device.is_cuda_array(p.grad) or device.device_index(p.grad) != device.device_index(p.data):
            raise ValueError(f"the grad of parameter {index} must be on its data's device, cuda:"
                             f"{device.device_index(p.data)}")
        if device.dtype_name(p.grad) != device.dtype_name(p.data):
            raise TypeError(f"the grad of parameter {index} has dtype {device.dtype_name(p.grad)}, its data "
                            f"{device.dtype_name(p.data)}")
        if tuple(p.grad.shape) != tuple(p.data.shape):
            raise ValueError(f"the grad of parameter {index} has shape {tuple(p.grad.shape)}, its data has shape "
                             f"{tuple(p.data.shape)}")
        return p.grad

    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [...]}``, PyTorch's layout.

        Arrays are NumPy copies, also of device state: the result does not change as training
        goes on.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for key, i in index.items():
            if self._state.get(key):
                state[i] = {k: (v if isinstance(v, (int, float)) or v is None else np.array(_device().to_host(v)))
                            for k, v in self._state[key].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (or a PyTorch optimizer's state dict).

        Everything is checked before anything changes: group count and sizes,
        state shapes against the parameters. Options come from the saved groups.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("an optimizer state dict is a dict with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer has {len(self.param_groups)}"
            )
        by_index = {}
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            indices = list(saved["params"])
            if len(indices) != len(group["params"]):
                raise ValueError(
                    f"a loaded parameter group has {len(indices)} parameters, the optimizer's has {len(group['params'])}"
                )
            by_index.update(zip(indices, group["params"]))
            options = self._check_options({k: v for k, v in saved.items() if k != "params"})
            options["params"] = group["params"]
            new_groups.append(options)
        new_state = {}
        for i, saved in dict(state_dict["state"]).items():
            if i not in by_index:
                raise ValueError(f"loaded state refers to parameter {i!r}, which no group lists")
            p = by_index[i]
            new_state[id(p)] = {key: self._load_state_value(key, value, p, i) for key, value in saved.items()}
        self.param_groups = new_groups
        self._state = new_state

    @staticmethod
    def _load_state_value(key, value, p, index):
        if key == "step":
            return int(float(value))
        if value is None:
            return None
        # asarray, then a copy: np.array(value, dtype=...) would warn on torch tensors.
        dtype = p.data.dtype if type(p.data) is np.ndarray else _device().dtype_name(p.data)
        array = np.asarray(_device().to_host(value)).astype(dtype, order="C")
        if array.shape != p.data.shape:
            raise ValueError(
                f"loaded state {key!r} of parameter {index} has shape {array.shape}, the parameter has {p.data.shape}"
            )
        if _on_device(p.data):
            device = _device()
            return device.to_device(array, device.device_index(p.data), device.library_of(p.data))
        return array

    def _check_common(self, group):
        if group.get("maximize"):
            raise ValueError("maximize=True is not supported: negate the loss instead")
        group["lr"] = _at_least_zero(group["lr"], "learning rate")
        group["weight_decay"] = _at_least_zero(group["weight_decay"], "weight_decay value")
        # .get: a PyTorch optimizer's state dict has no l1_decay.
        group["l1_decay"] = _at_least_zero(group.get("l1_decay", 0.0), "l1_decay value")

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum.

    PyTorch's rule: ``g += weight_decay * p``; with momentum the buffer starts
    as ``g`` on the first step, then ``b = momentum * b + (1 - dampening) * g``;
    the step uses ``g + momentum * b`` (Nesterov) or ``b``; ``p -= lr * step``.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, l1_decay=0):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_options(self, group):
        self._check_common(group)
        group["momentum"] = _at_least_zero(group["momentum"], "momentum value")
        group["dampening"] = _float(group["dampening"], "dampening")
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        return group

    def _fused(self, ops, p, grad, state, group):
        buf = None
        first = False
        if group["momentum"] != 0:
            buf = state.get("momentum_buffer")
            first = buf is None
            if first:  # the kernel sets it to the gradient
                state["momentum_buffer"] = buf = _namespace(p.data).zeros_like(p.data)
        ops.sgd_step(p.data, grad, buf, lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                     nesterov=group["nesterov"], first=first, weight_decay=group["weight_decay"],
                     l1_decay=group["l1_decay"])
        return True

    _native = "sgd"

    def _native_args(self, p, state, group):
        if group["momentum"] == 0:
            return [], 1, False
        fresh = state.get("momentum_buffer") is None
        if fresh:  # the kernel sets it to the gradient
            state["momentum_buffer"] = np.empty_like(p.data)
        return ["momentum_buffer"], 1, fresh

    def _native_options(self, group):
        return {k: group[k] for k in ("lr", "weight_decay", "l1_decay", "momentum", "dampening", "nesterov")}

    def _update(self, p, grad, state, group):
        momentum = group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # np.array, not .copy(): arithmetic on 0-d arrays yields scalars,
                # and the buffer must stay an array to be updated in place.
                buf = np.array(grad, dtype=p.data.dtype) if type(p.data) is np.ndarray else _device().copy(grad)
                state["momentum_buffer"] = buf
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, optional AMSGrad, L2 weight decay.

    ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 * v + (1 - beta2) * g * g``,
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``;
    AMSGrad uses the running maximum of ``v``. ``weight_decay`` adds
    ``weight_decay * p`` to the gradient (see :class:`AdamW` for decoupled decay).
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, l1_decay=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      l1_decay=l1_decay))

    def _check_options(self, group):
        self._check_common(group)
        group["eps"] = _at_least_zero(group["eps"], "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of floats, got {betas!r}")
        for i, beta in enumerate(betas):
            beta = _float(beta, f"betas[{i}]")
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        group["betas"] = (float(betas[0]), float(betas[1]))
        group["amsgrad"] = bool(group["amsgrad"])
        return group

    _native = "adam"

    @staticmethod
    def _prepare(p, state, group, xp=np):
        """The state on the first step (and the AMSGrad maximum where amsgrad is switched on after
        it), in the parameter's namespace ``xp``; count the step."""
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1

    def _native_args(self, p, state, group):
        self._prepare(p, state, group)
        return ["exp_avg", "exp_avg_sq", "max_exp_avg_sq" if group["amsgrad"] else None], state["step"], False

    def _native_options(self, group):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], weight_decay=group["weight_decay"], l1_decay=group["l1_decay"], beta1=beta1,
                    beta2=beta2, amsgrad=group["amsgrad"], decoupled=self._decoupled_weight_decay, eps=group["eps"])

    def _fused(self, ops, p, grad, state, group):
        self._prepare(p, state, group, _namespace(p.data))
        ops.adam_step(p.data, grad, state["exp_avg"], state["exp_avg_sq"],
                      state["max_exp_avg_sq"] if group["amsgrad"] else None, step=state["step"], lr=group["lr"],
                      betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"],
                      decoupled=self._decoupled_weight_decay, l1_decay=group["l1_decay"])
        return True

    def _update(self, p, grad, state, group):
        xp = _namespace(p.data)
        self._prepare(p, state, group, xp)
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        step = state["step"]
        if weight_decay != 0:
            if self._decoupled_weight_decay:
                p.data *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * p.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        second = exp_avg_sq
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"]
            xp.maximum(second, exp_avg_sq, out=second)
        denom = xp.sqrt(second) / bias_correction2_sqrt
        denom += group["eps"]
        p.data -= step_size * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay``
    before the Adam step, instead of adding ``weight_decay * p`` to the gradient."""

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 l1_decay=0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         l1_decay=l1_decay)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square of recent gradients.

    ``s = alpha * s + (1 - alpha) * g * g``; ``centered`` subtracts the square of
    the running mean gradient from ``s`` first; ``d = sqrt(s) + eps``; with
    momentum ``b = momentum * b + g / d``, ``p -= lr * b``, else ``p -= lr * g / d``.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 l1_decay=0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
                        l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_options(self, group):
        self._check_common(group)
        group["eps"] = _at_least_zero(group["eps"], "epsilon value")
        group["momentum"] = _at_least_zero(group["momentum"], "momentum value")
        group["alpha"] = _at_least_zero(group["alpha"], "alpha value")
        group["centered"] = bool(group["centered"])
        return group

    _native = "rmsprop"

    @staticmethod
    def _prepare(p, state, group, xp=np):
        """The state on the first step (and the buffers an option switched on later needs), in the
        parameter's namespace ``xp``; count the step."""
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
        for key, wanted in (("momentum_buffer", group["momentum"] > 0), ("grad_avg", group["centered"])):
            if wanted and key not in state:
                state[key] = xp.zeros_like(p.data)
        state["step"] += 1

    def _native_args(self, p, state, group):
        self._prepare(p, state, group)
        keys = ["square_avg", "momentum_buffer" if group["momentum"] > 0 else None,
                "grad_avg" if group["centered"] else None]
        return keys, state["step"], False

    def _native_options(self, group):
        return {k: group[k] for k in ("lr", "weight_decay", "l1_decay", "momentum", "eps", "alpha", "centered")}

    def _fused(self, ops, p, grad, state, group):
        self._prepare(p, state, group, _namespace(p.data))
        ops.rmsprop_step(p.data, grad, state["square_avg"], state.get("grad_avg") if group["centered"] else None,
                         state.get("momentum_buffer") if group["momentum"] > 0 else None, lr=group["lr"],
                         alpha=group["alpha"], eps=group["eps"], momentum=group["momentum"],
                         weight_decay=group["weight_decay"], l1_decay=group["l1_decay"])
        return True

    def _update(self, p, grad, state, group):
        xp = _namespace(p.data)
        self._prepare(p, state, group, xp)
        alpha, momentum = group["alpha"], group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            _lerp_(grad_avg, grad, 1 - alpha)
            # The variance estimate is >= 0 exactly but can round below zero once
            # the gradients are nearly constant; PyTorch would return NaN there.
            variance = square_avg - grad_avg * grad_avg
            avg = xp.sqrt(xp.maximum(variance, xp.zeros_like(variance)))
        else:
            avg = xp.sqrt(square_avg)
        avg += group["eps"]
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += grad / avg
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * grad / avg


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps shrink with the sum of squared gradients.

    ``s += g * g``; ``p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)``,
    with ``s`` starting at ``initial_accumulator_value``.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 l1_decay=0):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            l1_decay=l1_decay,
        )
        super().__init__(params, defaults)

    def _check_options(self, group):
        self._check_common(group)
        group["lr_decay"] = _at_least_zero(group["lr_decay"], "lr_decay value")
        group["initial_accumulator_value"] = _at_least_zero(
            group["initial_accumulator_value"], "initial_accumulator_value value"
        )
        group["eps"] = _at_least_zero(group["eps"], "epsilon value")
        return group

    _native = "adagrad"

    @staticmethod
    def _prepare(p, state, group, xp=np):
        """The state on the first step, in the parameter's namespace ``xp``; count the step."""
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1

    def _native_args(self, p, state, group):
        self._prepare(p, state, group)
        return ["sum"], state["step"], False

    def _native_options(self, group):
        return {k: group[k] for k in ("lr", "weight_decay", "l1_decay", "eps", "lr_decay")}

    def _fused(self, ops, p, grad, state, group):
        self._prepare(p, state, group, _namespace(p.data))
        ops.adagrad_step(p.data, grad, state["sum"], step=state["step"], lr=group["lr"], lr_decay=group["lr_decay"],
                         eps=group["eps"], weight_decay=group["weight_decay"], l1_decay=group["l1_decay"])
        return True

    def _update(self, p, grad, state, group):
        xp = _namespace(p.data)
        self._prepare(p, state, group, xp)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        std = xp.sqrt(state["sum"])
        std += group["eps"]
        p.data -= clr * grad / std


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012): steps scaled by the ratio of running RMS of updates and of gradients.

    ``s = rho * s + (1 - rho) * g * g``; ``d = sqrt(u + eps) / sqrt(s + eps) * g``;
    ``u = rho * u + (1 - rho) * d * d``; ``p -= lr * d``. PyTorch's defaults
    (``lr=1.0``) and state names (``square_avg``, ``acc_delta``).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, l1_decay=0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, l1_decay=l1_decay))

    def _check_options(self, group):
        self._check_common(group)
        group["eps"] = _at_least_zero(group["eps"], "epsilon value")
        group["rho"] = _float(group["rho"], "rho")
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']}")
        return group

    def _update(self, p, grad, state, group):
        xp = _namespace(p.data)
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            state["acc_delta"] = xp.zeros_like(p.data)
        rho, eps = group["rho"], group["eps"]
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = xp.sqrt(acc_delta + eps)
        delta /= xp.sqrt(square_avg + eps)
        delta *= grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        p.data -= group["lr"] * delta
