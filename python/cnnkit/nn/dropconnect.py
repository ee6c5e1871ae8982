"""DropConnect (Wan et al., 2013): dropout on the weights instead of the activations.

In training each weight is zeroed with probability ``p`` and the rest scaled
by ``1 / (1 - p)``, so the expected weight is the weight itself and evaluation
uses the weights unchanged. Two choices differ from the paper, for speed and
simplicity: one mask is drawn per forward call and shared by the whole batch
(the paper draws one per example), and inference uses the plain weights
rather than the paper's Gaussian moment matching. Biases are not dropped.
Masks come from cnnkit's seeded generator (``cnnkit.manual_seed``).
"""

from .. import functional as F
from .layers import Conv2d, Linear, _needs


def _check_p(p):
    p = F._float(p, "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"DropConnect probability has to be in [0, 1), but got {p}")
    return p


class _DropConnect:
    """Weight masking mixed into a layer with ``weight``/``bias`` Parameters."""

    def _draw_weight(self):
        """The weight this forward uses; ``weight_mask`` keeps the mask (None in eval) for backward."""
        if self.training and self.p > 0:
            self._used_weight, self.weight_mask = F.dropout(self.weight.data, self.p, return_mask=True)
        else:
            self._used_weight, self.weight_mask = self.weight.data, None
        return self._used_weight

    def _accumulate(self, dw, db):
        if dw is not None:
            self.weight.accumulate_grad(dw if self.weight_mask is None else dw * self.weight_mask)
        if self.bias is not None:
            self.bias.accumulate_grad(db)


class DropConnectLinear(_DropConnect, Linear):
    """``Linear`` whose weights are dropped with probability ``p`` in training."""

    def __init__(self, in_features, out_features, bias=True, *, p=0.5):
        super().__init__(in_features, out_features, bias)
        self.p = _check_p(p)

    def forward(self, x):
        self._input = x
        return F.linear(x, self._draw_weight(), self.bias.data if self.bias is not None else None)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.linear_backward(
            grad_output, self._input, self._used_weight, input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias),
        )
        self._accumulate(dw, db)
        return dx

    def extra_repr(self):
        return f"{super().extra_repr()}, p={self.p}"


class DropConnectConv2d(_DropConnect, Conv2d):
    """``Conv2d`` whose weights are dropped with probability ``p`` in training."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, *, p=0.5, algo="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, algo=algo)
        self.p = _check_p(p)

    def forward(self, x):
        self._input = x
        b = self.bias.data if self.bias is not None else None
        return F.conv2d(x, self._draw_weight(), b, *self._args(), algo=self.algo)

    def backward(self, grad_output, input_grad=True):
        dx, dw, db = F.conv2d_backward(
            grad_output, self._input, self._used_weight, *self._args(), input_grad=input_grad,
            weight_grad=self.weight.requires_grad, bias_grad=_needs(self.bias), algo=self.algo,
        )
        self._accumulate(dw, db)
        return dx

    def extra_repr(self):
        return f"{super().extra_repr()}, p={self.p}"
