"""Losses: ``loss = criterion(pred, target)`` returns a float, ``criterion.backward()`` d(pred)."""

from .. import functional as F


class _Loss:
    _name = ""

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' for a scalar loss, got {reduction!r}")
        self.reduction = reduction
        self._saved = None

    def _kwargs(self):
        return {"reduction": self.reduction}

    def __call__(self, pred, target):
        self._saved = (pred, target)
        return float(getattr(F, self._name)(pred, target, **self._kwargs()))

    forward = __call__

    def backward(self, grad_output=1.0):
        """d(loss)/d(pred) of the last call, scaled by ``grad_output``."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss was computed")
        pred, target = self._saved
        return getattr(F, self._name + "_backward")(pred, target, grad_output, **self._kwargs())


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits ``(N, C)`` against integer class labels ``(N,)``."""

    _name = "cross_entropy"

    def __init__(self, reduction="mean", ignore_index=-100):
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def _kwargs(self):
        return {"reduction": self.reduction, "ignore_index": self.ignore_index}


class MSELoss(_Loss):
    _name = "mse_loss"


class L1Loss(_Loss):
    _name = "l1_loss"


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss (the lectures' SVM loss): sum_j max(0, margin - x[y] + x[j])^p / C."""

    _name = "multi_margin_loss"

    def __init__(self, p=1, margin=1.0, reduction="mean"):
        super().__init__(reduction)
        if p not in (1, 2):
            raise ValueError(f"only p == 1 and p == 2 are supported, got {p}")
        self.p, self.margin = p, margin

    def _kwargs(self):
        return {"p": self.p, "margin": self.margin, "reduction": self.reduction}
