"""Layers: each ``forward`` is a call into ``cnnkit.functional``; each ``backward`` its gradient."""

import math
import warnings
from collections import OrderedDict

import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter, _device, _on_host, _summary_recorder

__all__ = [
    "Identity", "Conv2d", "ConvTranspose2d", "Linear", "MaxPool2d", "AvgPool2d",
    "AdaptiveAvgPool2d", "BatchNorm2d", "BatchNorm1d", "LocalResponseNorm", "ReLU", "ReLU6",
    "Sigmoid", "Tanh", "LeakyReLU", "ELU", "Softplus", "Hardtanh", "GELU", "SiLU", "Softmax",
    "LogSoftmax", "PReLU", "Flatten", "Dropout", "Dropout2d", "Sequential", "Residual",
]


def _pair(v):
    if isinstance(v, (tuple, list)):
        # A one-element sequence stands for both sides, as PyTorch's (3,).
        return (v[0], v[0]) if len(v) == 1 else tuple(v)
    return (v, v)


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _needs(param):
    return param is not None and param.requires_grad


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_output, input_grad=True):
        return grad_output if input_grad else None


class _ConvBase(Module):
    """What Conv2d and ConvTranspose2d share: the group check, PyTorch's initialisation of weight
    and bias, and the accumulation of their gradients."""

    def _init_parameters(self, in_channels, out_channels, kernel_size, groups, bias, transposed):
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must be positive and divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size)
        kh, kw = self.kernel_size
        if transposed:
            channels = (in_channels, out_channels // groups)
        else:
            channels = (out_channels, in_channels // groups)
        self.weight = Parameter(np.empty(channels + (kh, kw), np.float32))
        self.bias = Parameter(np.empty(out_channels, np.float32)) if bias else None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            # PyTorch's fan-in, weight.shape[1] * kH * kW, in either layout.
            bound = 1.0 / math.sqrt(channels[1] * kh * kw)
            init.uniform_(self.bias, -bound, bound)

    def _accumulate(self, grad_weight, grad_bias):
        # Fresh arrays from the backward op, held by nothing else: adopted, not copied.
        self.weight._accumulate_result(grad_weight)
        if self.bias is not None:
            self.bias._accumulate_result(grad_bias)


class Conv2d(_ConvBase):
    """2-D convolution, ``torch.nn.Conv2d``'s arguments and initialisation. ``padding_mode`` other
    than ``"zeros"`` pads with :func:`cnnkit.functional.pad` before an unpadded convolution."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, algo="auto"):
        super().__init__()
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.algo, self.padding_mode = algo, padding_mode
        self._init_parameters(in_channels, out_channels, kernel_size, groups, bias, transposed=False)
        if padding_mode != "zeros":
            # F.pad's (left, right, top, bottom); "same" puts an odd total's extra at the end, as conv2d.
            (top, bottom, left, right) = F._conv_padding(self.padding, self.kernel_size,
                                                         F._pair(self.stride, "stride"),
                                                         F._pair(self.dilation, "dilation"))
            self._pad = (left, right, top, bottom)

    def _args(self):
        # Other padding modes pad with F.pad first and convolve without padding.
        padding = self.padding if self.padding_mode == "zeros" else 0
        return self.stride, padding, self.dilation, self.groups

    def forward(self, x):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._pad, mode=self.padding_mode)
        self._input = x
        b = self.bias.data if self.bias is not None else None
        return F.conv2d(x, self.weight.data, b, *self._args(), algo=self.algo)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.conv2d_backward(
            grad_output, self._input, self.weight.data, *self._args(), input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias), algo=self.algo,
        )
        self._accumulate(dw, db)
        if dx is not None and self.padding_mode != "zeros":
            dx = F.pad_backward(dx, self._pad, mode=self.padding_mode)
        return dx

    def flops(self, input_shape, output_shape):
        kh, kw = self.kernel_size
        return 2 * int(np.prod(output_shape[1:])) * (self.in_channels // self.groups) * kh * kw

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ConvTranspose2d(_ConvBase):
    """2-D transposed convolution, ``torch.nn.ConvTranspose2d``'s arguments and initialisation
    (weight (in, out/groups, kH, kW)). ``forward(x, output_size=None)``: ``output_size`` (the
    output's (H, W), or a shape ending in them) picks the ``output_padding`` that reaches it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' for ConvTranspose2d (as PyTorch), "
                             f"got {padding_mode!r}")
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.output_padding, self.dilation = _pair(output_padding), _pair(dilation)
        self.padding_mode = padding_mode
        self._init_parameters(in_channels, out_channels, kernel_size, groups, bias, transposed=True)

    def _output_padding(self, x, output_size):
        if output_size is None:
            return self.output_padding
        hw = tuple(output_size)[-2:]
        if len(hw) != 2:
            raise ValueError(f"output_size must end in (H, W), got {output_size!r}")
        pads = []
        for i, want in enumerate(hw):
            smallest = ((np.shape(x)[-2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            if not smallest <= want < smallest + max(self.stride[i], self.dilation[i]):
                raise ValueError(f"requested an output size of {tuple(hw)}, but valid sizes for dimension "
                                 f"{i} range from {smallest} to "
                                 f"{smallest + max(self.stride[i], self.dilation[i]) - 1}")
            pads.append(want - smallest)
        return tuple(pads)

    def forward(self, x, output_size=None):
        self._input = x
        self._call_args = (self.stride, self.padding, self._output_padding(x, output_size), self.groups,
                           self.dilation)
        b = self.bias.data if self.bias is not None else None
        return F.conv_transpose2d(x, self.weight.data, b, *self._call_args)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.conv_transpose2d_backward(
            grad_output, self._input, self.weight.data, *self._call_args, input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias),
        )
        self._accumulate(dw, db)
        return dx

    def flops(self, input_shape, output_shape):
        kh, kw = self.kernel_size
        return 2 * int(np.prod(input_shape[1:])) * (self.out_channels // self.groups) * kh * kw

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}")


class Linear(Module):
    """``y = x W^T + b`` with ``torch.nn.Linear``'s initialisation."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), np.float32))
        self.bias = Parameter(np.empty(out_features, np.float32)) if bias else None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        self._input = x
        return F.linear(x, self.weight.data, self.bias.data if self.bias is not None else None)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.linear_backward(
            grad_output, self._input, self.weight.data, input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias),
        )
        self.weight._accumulate_result(dw)
        if self.bias is not None:
            self.bias._accumulate_result(db)
        return dx

    def flops(self, input_shape, output_shape):
        return 2 * int(np.prod(output_shape[1:])) * self.in_features

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        if return_indices:
            raise ValueError("MaxPool2d(return_indices=True) is not supported inside cnnkit.nn; "
                             "use cnnkit.functional.max_pool2d(..., return_indices=True)")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def forward(self, x):
        self._input = x
        out, self._indices = F.max_pool2d(x, *self._args(), return_indices=True)
        return out

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.max_pool2d_backward(grad_output, self._input, self._indices, *self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                self.divisor_override)

    def forward(self, x):
        self._input = x
        return F.avg_pool2d(x, *self._args())

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.avg_pool2d_backward(grad_output, self._input, *self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size; ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        self._input = x
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.adaptive_avg_pool2d_backward(grad_output, self._input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _BatchNorm(Module):
    _input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, np.float32))
            self.register_buffer("running_var", np.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        self._relu_output = None
        return self._normalise(F.batch_norm, x)

    def _forward_relu(self, x, relu):
        """``relu(self(x))`` in one pass over the data (Sequential's fusion of a batch norm and
        the ReLU after it). ``relu`` keeps the output as its input, as its own forward would
        have (the output is > 0 exactly where the ReLU's input was), so its backward stays right."""
        y = self._normalise(F.batch_norm_relu, x)
        self._relu_output = relu._input = y
        return y

    def _normalise(self, op, x):
        if np.ndim(x) not in self._input_ndims:
            want = " or ".join(f"{n}-D" for n in self._input_ndims)
            raise ValueError(f"{type(self).__name__} expects {want} input, got shape {np.shape(x)}")
        use_batch_stats = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(self.num_batches_tracked)
        self._input, self._batch_stats = x, use_batch_stats
        return op(
            x, self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.weight.data if self.affine else None, self.bias.data if self.affine else None,
            training=use_batch_stats, momentum=0.0 if momentum is None else momentum, eps=self.eps,
        )

    def backward(self, grad_output, input_grad=True):
        return self._gradients(F.batch_norm_backward, (grad_output, self._input), input_grad)

    def _backward_relu(self, grad_output, relu, input_grad=True):
        """The gradient through ``relu`` and this layer, within batch norm's passes, when the
        last forward was the fused one and ``relu`` has not run since; else the two backwards."""
        if self._relu_output is None or relu._input is not self._relu_output:
            return self.backward(relu.backward(grad_output), input_grad)
        return self._gradients(F.batch_norm_relu_backward, (grad_output, self._input, self._relu_output),
                               input_grad)

    def _gradients(self, op, arrays, input_grad):
        dx, dw, db = op(
            *arrays, self.running_mean, self.running_var,
            self.weight.data if self.affine else None, training=self._batch_stats, eps=self.eps,
        )
        if self.affine:
            self.weight._accumulate_result(dw)
            self.bias._accumulate_result(db)
        return dx if input_grad else None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    _input_ndims = (4,)


class BatchNorm1d(_BatchNorm):
    _input_ndims = (2, 3)


class LocalResponseNorm(Module):
    """AlexNet's normalisation across ``size`` neighbouring channels (PyTorch's formula)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        self._input = x
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.local_response_norm_backward(grad_output, self._input, self.size, self.alpha,
                                              self.beta, self.k)


class _Elementwise(Module):
    """An activation whose forward is ``F.<name>(x, *args)`` and backward ``F.<name>_backward(g, x, *args)``."""

    _name = ""

    def _args(self):
        return ()

    def forward(self, x):
        self._input = x
        return getattr(F, self._name)(x, *self._args())

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return getattr(F, self._name + "_backward")(grad_output, self._input, *self._args())


class ReLU(_Elementwise):
    _name = "relu"


class ReLU6(_Elementwise):
    _name = "relu6"


class Sigmoid(_Elementwise):
    _name = "sigmoid"


class Tanh(_Elementwise):
    _name = "tanh"


class LeakyReLU(_Elementwise):
    _name = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def _args(self):
        return (self.negative_slope,)


class ELU(_Elementwise):
    _name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def _args(self):
        return (self.alpha,)


class Softplus(_Elementwise):
    _name = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def _args(self):
        return (self.beta, self.threshold)


class Hardtanh(_Elementwise):
    """``x`` clipped to [min_val, max_val]."""

    _name = "hardtanh"

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if max_val < min_val:
            raise ValueError(f"max_val ({max_val}) must be >= min_val ({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def _args(self):
        return (self.min_val, self.max_val)

    def forward(self, x):
        # In place the input becomes the output, whose clipped values still give the same gradient.
        self._input = x
        return F.hardtanh(x, self.min_val, self.max_val, self.inplace)


class GELU(_Elementwise):
    """``x * Phi(x)``, or its tanh approximation with ``approximate="tanh"``."""

    _name = "gelu"

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _args(self):
        return (self.approximate,)


class SiLU(_Elementwise):
    """``x * sigmoid(x)``."""

    _name = "silu"

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        # The backward needs the input, which an in-place forward overwrites.
        self._input = x
        if self.inplace:
            self._input = np.array(x, dtype=np.float32) if _on_host(x) else _device().copy(x)
        return F.silu(x, self.inplace)


class _SoftmaxBase(Module):
    """Softmax or log-softmax along ``dim``; ``dim=None`` takes PyTorch's implicit choice (0 for
    0-, 1- and 3-D input, else 1) with its warning."""

    _name = ""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def _dim(self, ndim):
        if self.dim is not None:
            return self.dim
        warnings.warn(f"Implicit dimension choice for {self._name} has been deprecated. Change the call "
                      "to include dim=X as an argument.", UserWarning, stacklevel=3)
        return 0 if ndim in (0, 1, 3) else 1

    def forward(self, x):
        self._used_dim = self._dim(np.ndim(x))
        self._output = getattr(F, self._name)(x, self._used_dim)
        return self._output

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return getattr(F, self._name + "_backward")(grad_output, self._output, self._used_dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    _name = "softmax"


class LogSoftmax(_SoftmaxBase):
    _name = "log_softmax"


class PReLU(Module):
    """Leaky ReLU with a learned slope: one shared or one per channel."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full(num_parameters, init, np.float32))

    def forward(self, x):
        self._input = x
        return F.prelu(x, self.weight.data)

    def backward(self, grad_output, input_grad=True):
        dx, dw = F.prelu_backward(grad_output, self._input, self.weight.data)
        self.weight.accumulate_grad(dw)
        return dx if input_grad else None


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        if _on_host(x):
            x = np.asarray(x)
        # The array's own reshape keeps a device array (CuPy, PyTorch CUDA) where it is.
        self._shape = tuple(x.shape)
        ndim = x.ndim
        start = self.start_dim % ndim if ndim else 0
        end = self.end_dim % ndim if ndim else 0
        return x.reshape(self._shape[:start] + (-1,) + self._shape[end + 1:]) if ndim else x.reshape(1)

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return np.reshape(grad_output, self._shape) if _on_host(grad_output) else grad_output.reshape(self._shape)


class Dropout(Module):
    """Inverted dropout: zeroes with probability ``p`` and scales by 1/(1-p) in training; identity in eval."""

    _forward, _backward = staticmethod(F.dropout), staticmethod(F.dropout_backward)

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        out, self._mask = self._forward(x, self.p, self.training, self.inplace, return_mask=True)
        return out

    def backward(self, grad_output, input_grad=True):
        return self._backward(grad_output, self._mask, self.p) if input_grad else None

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Channel dropout: zeroes whole channels of (N, C, H, W) input with probability ``p`` and
    scales the rest by 1/(1-p) in training; identity in eval."""

    _forward, _backward = staticmethod(F.dropout2d), staticmethod(F.dropout2d_backward)


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        return items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        mods = list(self._modules.values())
        pooled_first = []
        i = 0
        while i < len(mods):
            if _fuses_relu(mods, i, x):
                x = mods[i]._forward_relu(x, mods[i + 1])
                i += 2
            elif _pools_before_relu(mods, i, x):
                x = mods[i](mods[i + 1](x))
                pooled_first.append(i)
                i += 2
            else:
                x = mods[i](x)
                i += 1
        self._pooled_first = pooled_first
        return x

    def backward(self, grad_output, input_grad=True):
        mods = list(self._modules.values())
        pooled_first = getattr(self, "_pooled_first", ())
        i = len(mods) - 1
        while i >= 0:
            if i > 0 and type(mods[i]) is ReLU and getattr(mods[i - 1], "_relu_output", None) is not None:
                grad_output = mods[i - 1]._backward_relu(grad_output, mods[i], input_grad=input_grad or i > 1)
                i -= 2
            elif i > 0 and i - 1 in pooled_first:
                grad_output = mods[i].backward(mods[i - 1].backward(grad_output), input_grad=input_grad or i > 1)
                i -= 2
            else:
                grad_output = mods[i].backward(grad_output, input_grad=input_grad or i > 0)
                i -= 1
        return grad_output


def _fuses_relu(mods, i, x):
    """Whether Sequential runs ``mods[i]`` and the ReLU after it as one fused op: a layer that
    has one, on NumPy input, outside ``summary()``'s recording (which lists each layer's call)."""
    return (i + 1 < len(mods) and type(mods[i + 1]) is ReLU and _has_fused_relu(type(mods[i]))
            and type(x) is np.ndarray and _summary_recorder[0] is None)


def _pools_before_relu(mods, i, x):
    """Whether Sequential runs ``mods[i]``, a ReLU, after the MaxPool2d that follows it instead of
    before: max pooling commutes with the ReLU (both keep order, the ReLU's kink gives a zero
    gradient either way), and the ReLU then passes over a quarter of the values or fewer. On
    NumPy input, outside ``summary()``'s recording."""
    return (type(mods[i]) is ReLU and i + 1 < len(mods) and type(mods[i + 1]) is MaxPool2d
            and type(x) is np.ndarray and _summary_recorder[0] is None)


_fused_relu_classes = {}


def _has_fused_relu(cls):
    """Whether ``cls`` has a ``_forward_relu`` standing for its own ``forward``: not for a
    subclass that overrides ``forward`` (SyncBatchNorm), which the fused form would bypass."""
    if cls not in _fused_relu_classes:
        owner = next((c for c in cls.__mro__ if "_forward_relu" in vars(c)), None)
        _fused_relu_classes[cls] = owner is not None and cls.forward is owner.forward
    return _fused_relu_classes[cls]


class Residual(Module):
    """``body(x) + shortcut(x)``: a ResNet block; ``shortcut`` is the identity unless given
    (e.g. a 1x1 strided Conv2d + BatchNorm2d projection when the shape changes)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else Identity()

    def forward(self, x):
        return _sum(self.body(x), self.shortcut(x), F.add)

    def _forward_relu(self, x, relu):
        """``relu(self(x))`` with the ReLU in the sum's pass (Sequential's fusion); ``relu``
        keeps the output as its input, which its backward reads the same way."""
        y = _sum(self.body(x), self.shortcut(x), F.add_relu, relu)
        relu._input = y
        return y

    def backward(self, grad_output, input_grad=True):
        d_body = self.body.backward(grad_output, input_grad=input_grad)
        d_short = self.shortcut.backward(grad_output, input_grad=input_grad)
        return _sum(d_body, d_short, F.add) if input_grad else None


def _sum(a, b, native, relu=None):
    """``native(a, b)`` for float32 NumPy arrays of one shape; otherwise (device arrays, other
    dtypes, broadcasting) ``a + b``, through ``relu`` when given."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.shape == b.shape
            and a.dtype == b.dtype == np.float32):
        return native(a, b)
    return a + b if relu is None else relu.forward(a + b)
