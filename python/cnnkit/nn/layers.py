"""Layers: each ``forward`` is a call into ``cnnkit.functional``; each ``backward`` its gradient."""

import math
from collections import OrderedDict

import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _needs(param):
    return param is not None and param.requires_grad


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_output, input_grad=True):
        return grad_output if input_grad else None


class Conv2d(Module):
    """2-D convolution, ``torch.nn.Conv2d``'s arguments and initialisation."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, algo="auto"):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' (the only mode cnnkit has), got {padding_mode!r}")
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must be positive and divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.groups, self.algo = groups, algo
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels // groups, kh, kw), np.float32))
        self.bias = Parameter(np.empty(out_channels, np.float32)) if bias else None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(in_channels // groups * kh * kw)
            init.uniform_(self.bias, -bound, bound)

    def _args(self):
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x):
        self._input = x
        b = self.bias.data if self.bias is not None else None
        return F.conv2d(x, self.weight.data, b, *self._args(), algo=self.algo)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.conv2d_backward(
            grad_output, self._input, self.weight.data, *self._args(), input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias), algo=self.algo,
        )
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def flops(self, input_shape, output_shape):
        kh, kw = self.kernel_size
        return 2 * int(np.prod(output_shape[1:])) * (self.in_channels // self.groups) * kh * kw

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


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
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
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
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad

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
        return F.batch_norm(
            x, self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.weight.data if self.affine else None, self.bias.data if self.affine else None,
            training=use_batch_stats, momentum=0.0 if momentum is None else momentum, eps=self.eps,
        )

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.batch_norm_backward(
            grad_output, self._input, self.running_mean, self.running_var,
            self.weight.data if self.affine else None, training=self._batch_stats, eps=self.eps,
        )
        if self.affine:
            self.weight.accumulate_grad(dw)
            self.bias.accumulate_grad(db)
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
        x = np.asarray(x)
        self._shape = x.shape
        ndim = x.ndim
        start = self.start_dim % ndim
        end = self.end_dim % ndim
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:]) if ndim else x.reshape(1)

    def backward(self, grad_output, input_grad=True):
        return np.reshape(grad_output, self._shape) if input_grad else None


class Dropout(Module):
    """Inverted dropout: zeroes with probability ``p`` and scales by 1/(1-p) in training; identity in eval."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x):
        out, self._mask = F.dropout(x, self.p, self.training, return_mask=True)
        return out

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.dropout_backward(grad_output, self._mask, self.p)

    def extra_repr(self):
        return f"p={self.p}"


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
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output, input_grad=True):
        mods = list(self._modules.values())
        for i in range(len(mods) - 1, -1, -1):
            grad_output = mods[i].backward(grad_output, input_grad=input_grad or i > 0)
        return grad_output


class Residual(Module):
    """``body(x) + shortcut(x)``: a ResNet block; ``shortcut`` is the identity unless given
    (e.g. a 1x1 strided Conv2d + BatchNorm2d projection when the shape changes)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)

    def backward(self, grad_output, input_grad=True):
        d_body = self.body.backward(grad_output, input_grad=input_grad)
        d_short = self.shortcut.backward(grad_output, input_grad=input_grad)
        return d_body + d_short if input_grad else None
