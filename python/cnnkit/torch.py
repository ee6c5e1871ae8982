"""cnnkit's kernels inside PyTorch: autograd Functions and :func:`accelerate`.

Importable only where PyTorch is installed (cnnkit itself never needs it). The functions below
have ``torch.nn.functional``'s names and signatures; each runs cnnkit's forward and backward ops
(through :mod:`cnnkit.functional`, which reads and returns tensors without copies), so gradients
flow through torch's autograd as usual. They compute in float32 on the CPU: other dtypes are
converted as :mod:`cnnkit.functional` converts them, CUDA tensors are refused.

:func:`accelerate` puts them into an existing model: the forward of each matching ``torch.nn``
module is swapped for cnnkit's, leaving the module objects, parameters, buffers, ``state_dict``
and any optimizer untouched; :func:`restore` swaps them back. A module cnnkit cannot run (an
argument it lacks, such as ``padding_mode="reflect"``; tensors that are not CPU float32) runs on
PyTorch, and a :class:`FallbackWarning` says so once per module type.

    model = cnnkit.torch.accelerate(model)
"""

import warnings
from functools import partial

try:
    import torch
except ModuleNotFoundError as e:  # cnnkit itself never needs torch; this module is its adapter
    raise ModuleNotFoundError("cnnkit.torch needs PyTorch: pip install torch (or \"cnnkit[torch]\")",
                              name="torch") from e

from . import functional as F

__all__ = ["FallbackWarning", "accelerate", "restore", "conv2d", "max_pool2d", "avg_pool2d", "batch_norm",
           "linear", "cross_entropy", "relu", "leaky_relu", "elu", "relu6", "sigmoid", "tanh", "softplus",
           "prelu", "softmax", "log_softmax"]


class FallbackWarning(UserWarning):
    """A module that :func:`accelerate` was given runs on PyTorch, not on cnnkit."""


# ----------------------------------------------------------------------------
# autograd Functions
# ----------------------------------------------------------------------------


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(input, weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db = F.conv2d_backward(grad_output, input, weight, *ctx.args, input_grad=need[0],
                                       weight_grad=need[1], bias_grad=need[2] and ctx.has_bias)
        return dx, dw, db, None, None, None, None


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, dilation, ceil_mode):
        out, indices = F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)
        ctx.save_for_backward(input, indices)
        ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, grad_output, grad_indices):
        input, indices = ctx.saved_tensors
        return (F.max_pool2d_backward(grad_output, input, indices, *ctx.args),) + (None,) * 5


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, ceil_mode, count_include_pad):
        ctx.save_for_backward(input)
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
        return F.avg_pool2d(input, *ctx.args)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return (F.avg_pool2d_backward(grad_output, input, *ctx.args),) + (None,) * 5


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias, training, momentum, eps):
        ctx.has_weight = weight is not None
        if weight is None and bias is not None:
            weight = torch.ones_like(bias)  # cnnkit's backward gives grad_bias only with a weight
        out = F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        if not training:
            # Eval mode's backward needs the statistics the forward used, whatever happens to
            # the buffers before it runs.
            running_mean, running_var = running_mean.clone(), running_var.clone()
        ctx.save_for_backward(input, weight, running_mean if not training else None,
                              running_var if not training else None)
        ctx.training, ctx.eps = training, eps
        return out

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, running_mean, running_var = ctx.saved_tensors
        dx, dw, db = F.batch_norm_backward(grad_output, input, running_mean, running_var, weight,
                                           ctx.training, ctx.eps)
        return dx, None, None, dw if ctx.has_weight else None, db, None, None, None


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        return F.linear(input, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        return F.linear_backward(grad_output, input, weight, input_grad=need[0], weight_grad=need[1],
                                 bias_grad=need[2] and ctx.has_bias)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, reduction, ignore_index):
        ctx.save_for_backward(input, target)
        ctx.args = (reduction, ignore_index)
        loss = F.cross_entropy(input, target, reduction=reduction, ignore_index=ignore_index)
        return loss if reduction == "none" else input.new_tensor(loss)

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        reduction, ignore_index = ctx.args
        grad = F.cross_entropy_backward(input, target, grad_output, reduction=reduction, ignore_index=ignore_index)
        return grad, None, None, None


class _Activation(torch.autograd.Function):
    """``F.<name>(input, *params)``, differentiated by ``F.<name>_backward(grad, input, *params)``."""

    @staticmethod
    def forward(ctx, input, name, *params):
        ctx.save_for_backward(input)
        ctx.name, ctx.params = name, params
        return getattr(F, name)(input, *params)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad = getattr(F, ctx.name + "_backward")(grad_output, input, *ctx.params)
        return (grad, None) + (None,) * len(ctx.params)


class _Softmax(torch.autograd.Function):
    """softmax or log_softmax, differentiated from the forward's output."""

    @staticmethod
    def forward(ctx, input, name, dim):
        out = getattr(F, name)(input, dim)
        ctx.save_for_backward(out)
        ctx.name, ctx.dim = name, dim
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return getattr(F, ctx.name + "_backward")(grad_output, out, ctx.dim), None, None


class _PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight):
        ctx.save_for_backward(input, weight)
        return F.prelu(input, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        return F.prelu_backward(grad_output, input, weight)


# ----------------------------------------------------------------------------
# torch.nn.functional's signatures
# ----------------------------------------------------------------------------


def _refuse(op, name, value, supported):
    if value != supported:
        raise ValueError(f"cnnkit.torch.{op}: {name}={value!r} is not supported (only {supported!r})")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    out, indices = _MaxPool2d.apply(input, kernel_size, stride, padding, dilation, ceil_mode)
    return (out, indices) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    _refuse("avg_pool2d", "divisor_override", divisor_override, None)
    return _AvgPool2d.apply(input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    return _BatchNorm.apply(input, running_mean, running_var, weight, bias, training, momentum, eps)


def linear(input, weight, bias=None):
    return _Linear.apply(input, weight, bias)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    if weight is not None:
        raise ValueError("cnnkit.torch.cross_entropy: class weights (weight=) are not supported")
    for name, value, supported in (("size_average", size_average, None), ("reduce", reduce, None),
                                   ("label_smoothing", label_smoothing, 0.0)):
        _refuse("cross_entropy", name, value, supported)
    return _CrossEntropy.apply(input, target, reduction, ignore_index)


def relu(input, inplace=False):
    _refuse("relu", "inplace", inplace, False)
    return _Activation.apply(input, "relu")


def leaky_relu(input, negative_slope=0.01, inplace=False):
    _refuse("leaky_relu", "inplace", inplace, False)
    return _Activation.apply(input, "leaky_relu", negative_slope)


def elu(input, alpha=1.0, inplace=False):
    _refuse("elu", "inplace", inplace, False)
    return _Activation.apply(input, "elu", alpha)


def relu6(input, inplace=False):
    _refuse("relu6", "inplace", inplace, False)
    return _Activation.apply(input, "relu6")


def sigmoid(input):
    return _Activation.apply(input, "sigmoid")


def tanh(input):
    return _Activation.apply(input, "tanh")


def softplus(input, beta=1.0, threshold=20.0):
    return _Activation.apply(input, "softplus", beta, threshold)


def prelu(input, weight):
    return _PReLU.apply(input, weight)


def softmax(input, dim):
    return _Softmax.apply(input, "softmax", dim)


def log_softmax(input, dim):
    return _Softmax.apply(input, "log_softmax", dim)


# ----------------------------------------------------------------------------
# accelerate: torch.nn modules' forwards on the functions above
# ----------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised by a module's cnnkit forward, before any work, for a call PyTorch must run."""


def _cpu_float32(*tensors):
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided):
            raise _Unsupported(f"a {t.dtype} tensor on {t.device} (cnnkit runs dense float32 on the CPU)")


def _conv2d_forward(m, input):
    _cpu_float32(input, m.weight, m.bias)
    return conv2d(input, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _linear_forward(m, input):
    _cpu_float32(input, m.weight, m.bias)
    return linear(input, m.weight, m.bias)


def _max_pool2d_forward(m, input):
    _cpu_float32(input)
    return max_pool2d(input, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)


def _avg_pool2d_forward(m, input):
    _cpu_float32(input)
    return avg_pool2d(input, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)


def _batch_norm_forward(m, input):
    # torch.nn.modules.batchnorm._BatchNorm.forward's bookkeeping, on cnnkit's batch norm.
    m._check_input_dim(input)
    _cpu_float32(input, m.weight, m.bias, m.running_mean, m.running_var)
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        if m.momentum is None:  # a cumulative moving average
            factor = 1.0 / float(m.num_batches_tracked)
    use_batch_stats = m.training or (m.running_mean is None and m.running_var is None)
    update = not m.training or m.track_running_stats
    return batch_norm(input, m.running_mean if update else None, m.running_var if update else None,
                      m.weight, m.bias, use_batch_stats, factor, m.eps)


def _cross_entropy_forward(m, input, target):
    _cpu_float32(input)
    if input.dim() != 2 or target.is_floating_point():
        raise _Unsupported("input that is not (N, C) logits or targets that are not class indices")
    return cross_entropy(input, target, ignore_index=m.ignore_index, reduction=m.reduction)


def _activation_forward(name, params, m, input):
    _cpu_float32(input)
    return _Activation.apply(input, name, *(getattr(m, p) for p in params))


def _softmax_forward(name, m, input):
    _cpu_float32(input)
    return _Softmax.apply(input, name, m.dim)


def _prelu_forward(m, input):
    _cpu_float32(input, m.weight)
    return prelu(input, m.weight)


def _all_supported(m):
    return None


def _inplace(m):
    return "inplace=True" if m.inplace else None


def _no_dim(m):
    return "dim=None" if m.dim is None else None


nn = torch.nn
# module class -> (what cnnkit lacks for this module, or None; its forward on cnnkit's functions)
_MODULES = {
    nn.Conv2d: (lambda m: None if m.padding_mode == "zeros" else f"padding_mode={m.padding_mode!r}",
                _conv2d_forward),
    nn.Linear: (_all_supported, _linear_forward),
    nn.MaxPool2d: (_all_supported, _max_pool2d_forward),
    nn.AvgPool2d: (lambda m: None if m.divisor_override is None else "divisor_override", _avg_pool2d_forward),
    nn.BatchNorm1d: (_all_supported, _batch_norm_forward),
    nn.BatchNorm2d: (_all_supported, _batch_norm_forward),
    nn.BatchNorm3d: (_all_supported, _batch_norm_forward),
    nn.CrossEntropyLoss: (lambda m: ("weight" if m.weight is not None else
                                     "label_smoothing" if m.label_smoothing else None), _cross_entropy_forward),
    nn.ReLU: (_inplace, partial(_activation_forward, "relu", ())),
    nn.LeakyReLU: (_inplace, partial(_activation_forward, "leaky_relu", ("negative_slope",))),
    nn.ELU: (_inplace, partial(_activation_forward, "elu", ("alpha",))),
    nn.ReLU6: (_inplace, partial(_activation_forward, "relu6", ())),
    nn.Sigmoid: (_all_supported, partial(_activation_forward, "sigmoid", ())),
    nn.Tanh: (_all_supported, partial(_activation_forward, "tanh", ())),
    nn.Softplus: (_all_supported, partial(_activation_forward, "softplus", ("beta", "threshold"))),
    nn.PReLU: (_all_supported, _prelu_forward),
    nn.Softmax: (_no_dim, partial(_softmax_forward, "softmax")),
    nn.LogSoftmax: (_no_dim, partial(_softmax_forward, "log_softmax")),
}
del nn


def _notice(notices, module, reason):
    name = type(module).__name__
    if name not in notices:
        notices.add(name)
        warnings.warn(f"cnnkit.torch.accelerate: {name} with {reason} runs on PyTorch", FallbackWarning,
                      stacklevel=3)


class _AcceleratedForward:
    """A module's forward on cnnkit, handing calls cnnkit cannot run to the module's own forward."""

    def __init__(self, module, forward, notices):
        self.module, self.forward, self.notices = module, forward, notices

    def __call__(self, *args, **kwargs):
        try:
            return self.forward(self.module, *args, **kwargs)
        except _Unsupported as e:
            _notice(self.notices, self.module, e)
            return type(self.module).forward(self.module, *args, **kwargs)


def _match(module):
    """``module``'s entry in _MODULES, when its class runs that entry's forward unchanged."""
    for cls, entry in _MODULES.items():
        if isinstance(module, cls) and type(module).forward is cls.forward:
            return entry
    return None


def accelerate(model):
    """Run the forward (and so the backward) of ``model``'s supported modules on cnnkit; returns ``model``.

    Conv2d, Linear, MaxPool2d, AvgPool2d, BatchNorm1d/2d/3d, CrossEntropyLoss, ReLU, LeakyReLU,
    ELU, ReLU6, Sigmoid, Tanh, Softplus, PReLU, Softmax and LogSoftmax are swapped, in ``model``
    and every submodule (subclasses with their own forward are left alone). Only the forward
    changes: parameters, buffers (running statistics are updated in place, as PyTorch does),
    hooks, ``state_dict`` and optimizers stay as they are. A module with an argument cnnkit lacks
    (``padding_mode="reflect"``, ``inplace=True``, ...) keeps PyTorch's forward, and a call with
    tensors that are not CPU float32 runs on PyTorch: a :class:`FallbackWarning` says which, once
    per module type. Calling it again is harmless; :func:`restore` undoes it.
    """
    notices = set()
    for module in model.modules():
        entry = _match(module)
        if entry is None or "forward" in vars(module):
            continue
        reason = entry[0](module)
        if reason is not None:
            _notice(notices, module, reason)
            continue
        module.forward = _AcceleratedForward(module, entry[1], notices)
    return model


def restore(model):
    """Undo :func:`accelerate`: every module of ``model`` runs PyTorch's forward again; returns ``model``."""
    for module in model.modules():
        if isinstance(vars(module).get("forward"), _AcceleratedForward):
            del module.forward
    return model
