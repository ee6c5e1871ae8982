"""Maxout units (Goodfellow et al., 2013): each output is the maximum of ``pieces`` learned linear
functions of the input, a learned convex piecewise-linear activation.

``Maxout(k)`` takes the maximum over groups of ``k`` consecutive channels of
whatever precedes it (so ``Sequential(Conv2d(c, k * n, 3), Maxout(k))`` has
``n`` maxout units); :class:`MaxoutLinear` and :class:`MaxoutConv2d` are that
pair as one layer. The pieces of output unit ``j`` are rows (channels)
``j*k .. j*k + k - 1`` of the weight, so a ``torch.nn.Linear(in, k * out)``
followed by the same grouped maximum loads the ``state_dict`` unchanged.
"""

from .. import functional as F
from .layers import Conv2d, Linear
from .module import Module


class Maxout(Module):
    """The maximum over each group of ``pool_size`` consecutive channels along ``dim``;
    backward sends each gradient to the group's winning channel."""

    def __init__(self, pool_size, dim=1):
        super().__init__()
        self.pool_size, self.dim = pool_size, dim

    def forward(self, x):
        self._input = x
        return F.maxout(x, self.pool_size, self.dim)

    def backward(self, grad_output, input_grad=True):
        if not input_grad:
            return None
        return F.maxout_backward(grad_output, self._input, self.pool_size, self.dim)

    def extra_repr(self):
        return f"pool_size={self.pool_size}, dim={self.dim}"


class _MaxoutOf:
    """Maxout over the pieces computed by the linear layer this is mixed into."""

    _dim = 1

    def forward(self, x):
        self._pieces = super().forward(x)
        return F.maxout(self._pieces, self.pieces, self._dim)

    def backward(self, grad_output, input_grad=True):
        grad_pieces = F.maxout_backward(grad_output, self._pieces, self.pieces, self._dim)
        return super().backward(grad_pieces, input_grad)

    def flops(self, input_shape, output_shape):
        # The layer computes every piece; output_shape counts only the units.
        return self.pieces * super().flops(input_shape, output_shape)


def _check_pieces(pieces):
    pieces = F._int(pieces, "pieces")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    return pieces


class MaxoutLinear(_MaxoutOf, Linear):
    """``out_features`` maxout units, each the maximum of ``pieces`` affine functions of the input.

    ``weight`` is ``(pieces * out_features, in_features)``, initialised as ``Linear``'s.
    """

    _dim = -1

    def __init__(self, in_features, out_features, bias=True, *, pieces=2):
        k = _check_pieces(pieces)
        super().__init__(in_features, k * out_features, bias)
        self.pieces = k

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features // self.pieces}, "
                f"pieces={self.pieces}")


class MaxoutConv2d(_MaxoutOf, Conv2d):
    """``out_channels`` maxout feature maps, each the pixel-wise maximum of ``pieces`` convolutions.

    ``Conv2d``'s arguments; ``weight`` is ``(pieces * out_channels, in_channels // groups, kh, kw)``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, *, pieces=2, algo="auto"):
        k = _check_pieces(pieces)
        super().__init__(in_channels, k * out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, algo=algo)
        self.pieces = k

    def extra_repr(self):
        return f"{super().extra_repr()}, pieces={self.pieces}"
