"""Losses: ``loss = criterion(pred, target)`` returns a float, ``criterion.backward()`` d(pred)."""

from .. import functional as F

__all__ = ["NLLLoss", "CrossEntropyLoss", "MSELoss", "L1Loss", "MultiMarginLoss"]


class _Loss:
    _name = ""

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self._saved = None

    def _kwargs(self):
        return {"reduction": self.reduction}

    def __call__(self, pred, target):
        """The loss: a float, or with ``reduction="none"`` the float32 array of per-element losses."""
        self._saved = (pred, target)
        loss = getattr(F, self._name)(pred, target, **self._kwargs())
        return loss if self.reduction == "none" else float(loss)

    forward = __call__

    def backward(self, grad_output=1.0):
        """d(loss)/d(pred) of the last call, scaled by ``grad_output`` (for ``reduction="none"`` one
        per element, or a scalar for all)."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss was computed")
        pred, target = self._saved
        return getattr(F, self._name + "_backward")(pred, target, grad_output, **self._kwargs())


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities ``(N, C, ...)`` against class indices, with
    ``torch.nn.NLLLoss``'s arguments (``size_average``/``reduce`` the deprecated spellings of
    ``reduction``)."""

    _name = "nll_loss"

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(F._legacy_reduction(size_average, reduce, reduction))
        self.weight, self.ignore_index = weight, ignore_index

    def _kwargs(self):
        return {"weight": self.weight, "ignore_index": self.ignore_index, "reduction": self.reduction}


class CrossEntropyLoss(NLLLoss):
    """Softmax cross-entropy of logits ``(N, C, ...)`` against class indices or class
    probabilities, with ``torch.nn.CrossEntropyLoss``'s arguments."""

    _name = "cross_entropy"

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.label_smoothing = label_smoothing

    def _kwargs(self):
        return {**super()._kwargs(), "label_smoothing": self.label_smoothing}


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
