"""Keras-style convenience on every model: ``compile``, ``fit``, ``evaluate``, ``predict``.

For those who come from Keras. Every :class:`cnnkit.nn.Module` has these
methods; they are thin wrappers over :func:`cnnkit.train.fit`,
:func:`~cnnkit.train.evaluate` and :func:`~cnnkit.train.predict`, not a second
training loop::

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=64, validation_split=0.2,
                        callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
    loss, accuracy = model.evaluate(x_test, y_test)
    probabilities = model.predict(x_test)

``compile`` takes losses and optimizers by name or as objects. Optimizers
named by a string get Keras's default learning rates, listed in
:data:`OPTIMIZERS`; pass an optimizer object for any other setting. (``Module.compile`` is this Keras method, not PyTorch's
``torch.compile`` wrapper of the same name.)
"""

import math

import numpy as np

from .functional import _positive_int

__all__ = ["KerasMixin", "EarlyStopping", "ModelCheckpoint", "get_loss", "get_optimizer"]

# name -> the class's name in cnnkit.nn; looked up when used, so names whose
# class this build lacks are simply not offered.
_LOSS_CLASSES = {
    "sparse_categorical_crossentropy": "CrossEntropyLoss",
    "cross_entropy": "CrossEntropyLoss",
    "nll_loss": "NLLLoss",
    "mse": "MSELoss",
    "mean_squared_error": "MSELoss",
    "mae": "L1Loss",
    "mean_absolute_error": "L1Loss",
    "l1": "L1Loss",
    "multi_margin": "MultiMarginLoss",
}

#: Optimizer names, their classes in :mod:`cnnkit.optim` and Keras's default learning rates.
OPTIMIZERS = {
    "sgd": ("SGD", 0.01),
    "adam": ("Adam", 0.001),
    "adamw": ("AdamW", 0.001),
    "rmsprop": ("RMSprop", 0.001),
    "adagrad": ("Adagrad", 0.001),
    "adadelta": ("Adadelta", 0.001),
}

_METRICS = {"accuracy": "accuracy", "acc": "accuracy"}


def _losses():
    from . import nn

    return {name: getattr(nn, cls) for name, cls in _LOSS_CLASSES.items() if hasattr(nn, cls)}


def _optimizers():
    from . import optim

    return {name: (getattr(optim, cls), lr) for name, (cls, lr) in OPTIMIZERS.items() if hasattr(optim, cls)}


def get_loss(loss):
    """A loss object from a name (the keys of ``_LOSS_CLASSES``), a loss class, or a loss object (returned as is)."""
    if isinstance(loss, str):
        losses = _losses()
        key = loss.lower()
        if key not in losses:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(sorted(losses))} or pass a loss object")
        return losses[key]()
    if isinstance(loss, type):
        loss = loss()
    if not (callable(loss) and callable(getattr(loss, "backward", None))):
        raise TypeError(f"loss must be a name or a cnnkit loss (callable, with backward()), got {type(loss).__name__}")
    return loss


def get_optimizer(optimizer, model):
    """An optimizer over ``model``'s parameters from a name, an optimizer class, or an optimizer object.

    An object must already hold every trainable parameter of ``model``.
    """
    from . import optim

    if isinstance(optimizer, str):
        table = _optimizers()
        key = optimizer.lower()
        if key not in table:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(sorted(table))} "
                             "or pass an optimizer object")
        cls, lr = table[key]
        return cls(model.parameters(), lr=lr)
    if isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer):
        return optimizer(model.parameters())
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be a name or a cnnkit optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if any(id(p) not in held for p in model.parameters() if p.requires_grad):
        raise ValueError("the optimizer does not hold all of this model's trainable parameters")
    return optimizer


class _Compiled:
    def __init__(self, optimizer, loss, metrics):
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics


def _metric_names(metrics):
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    names = []
    for m in metrics:
        if not isinstance(m, str) or m.lower() not in _METRICS:
            raise ValueError(f"unknown metric {m!r}; cnnkit computes {', '.join(sorted(_METRICS))}")
        names.append(_METRICS[m.lower()])
    return names


class KerasMixin:
    """The Keras-style methods that :class:`cnnkit.nn.Module` inherits."""

    def _compiled_or_raise(self, what):
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            raise RuntimeError(f"call model.compile(optimizer, loss) before model.{what}()")
        return compiled

    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics for :meth:`fit` and :meth:`evaluate`.

        ``optimizer``: a name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
        ``"adagrad"``, ``"adadelta"``: Keras's learning rates, see :data:`OPTIMIZERS`),
        an optimizer class or an optimizer object over this model's parameters.
        ``loss``: a name (``"sparse_categorical_crossentropy"`` or ``"cross_entropy"``
        for integer labels, ``"mse"``, ``"mae"``, ...), a loss class or object.
        ``metrics``: None or ``["accuracy"]`` (``"acc"`` is the same).
        """
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss=\"sparse_categorical_crossentropy\"")
        compiled = _Compiled(get_optimizer(optimizer, self), get_loss(loss), _metric_names(metrics))
        self.__dict__["_compiled"] = compiled

    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, scheduler=None, augment=None, checkpoint_dir=None, resume=False,
            checkpoint_every=None):
        """Train with :func:`cnnkit.train.fit` and return its :class:`~cnnkit.train.History`.

        ``validation_split`` holds out the *last* fraction of ``x`` and ``y`` (before
        shuffling, as Keras does); ``validation_data=(x_val, y_val)`` takes precedence.
        ``callbacks`` are :class:`EarlyStopping`, :class:`ModelCheckpoint` or any
        ``cb(epoch, logs, model)`` that returns True to stop. ``scheduler``,
        ``augment``, ``checkpoint_dir``, ``resume`` and ``checkpoint_every`` are
        passed on to :func:`cnnkit.train.fit` (resumable training).
        """
        from . import train

        compiled = self._compiled_or_raise("fit")
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise TypeError("validation_data must be a pair (x_val, y_val)")
            val = tuple(validation_data)
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
            split_at = math.floor(len(x) * (1.0 - validation_split))
            if not 0 < split_at < len(x):
                raise ValueError(f"validation_split={validation_split} of {len(x)} samples leaves an empty "
                                 "training or validation set")
            x, y, val = x[:split_at], y[:split_at], (x[split_at:], y[split_at:])
        return train.fit(self, compiled.loss, compiled.optimizer, (x, y), epochs=_positive_int(epochs, "epochs"),
                         batch_size=_positive_int(batch_size, "batch_size"), val=val, scheduler=scheduler,
                         augment=augment, callbacks=callbacks, verbose=verbose, checkpoint_dir=checkpoint_dir,
                         resume=resume, checkpoint_every=checkpoint_every)

    def evaluate(self, x, y, batch_size=32, return_dict=False):
        """The loss, and the compiled metrics, on ``(x, y)`` in eval mode.

        Returns the loss alone when no metric was compiled, else ``[loss, accuracy]``;
        with ``return_dict`` a dict ``{"loss": ..., "accuracy": ...}``.
        """
        from . import train

        compiled = self._compiled_or_raise("evaluate")
        loss, accuracy = train.evaluate(self, compiled.loss, (x, y), batch_size=_positive_int(batch_size, "batch_size"))
        results = {"loss": loss}
        if "accuracy" in compiled.metrics:
            results["accuracy"] = accuracy
        if return_dict:
            return results
        return loss if len(results) == 1 else list(results.values())

    def predict(self, x, batch_size=32, logits=False):
        """The model's outputs for ``x`` in eval mode, batch by batch.

        When the compiled loss is cross-entropy the outputs are turned into class
        probabilities (a softmax over dim 1), as a Keras model ending in a softmax
        would give; ``logits=True`` returns the raw outputs. Other losses, or a
        model not compiled, give the raw outputs.
        """
        from . import functional as F
        from . import nn, train

        out = train.predict(self, x, batch_size=_positive_int(batch_size, "batch_size"))
        compiled = self.__dict__.get("_compiled")
        if logits or compiled is None or not isinstance(compiled.loss, nn.CrossEntropyLoss) or out.ndim < 2:
            return out
        return F.softmax(out, dim=1)


# ----------------------------------------------------------------------------
# callbacks
# ----------------------------------------------------------------------------


class _Monitor:
    """The "is this epoch better" rule that EarlyStopping and ModelCheckpoint share."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, but the epoch's logs have only "
                             f"{', '.join(logs)} (validation numbers need validation data)")
        return float(logs[self.monitor])

    def improves(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    An improvement is a change of more than ``min_delta`` in the right direction
    (``mode="auto"``: up for accuracies, down otherwise). With
    ``restore_best_weights`` the model gets the weights of its best epoch back
    when training ends, stopped early or not. After training ``stopped_epoch``
    is the (0-based) epoch that stopped it, or None, and ``best_epoch`` the best.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False):
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.patience = patience
        self.restore_best_weights = bool(restore_best_weights)
        self.wait = 0
        self.best_epoch = self.stopped_epoch = None
        self._best_weights = None

    def __call__(self, epoch, logs, model):
        value = self.value(logs)
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = model.state_dict()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best_weights and self._best_weights is not None:
            model.load_state_dict(self._best_weights)

    def state_dict(self):
        """What a training checkpoint keeps, so that a resumed run stops where the whole one would."""
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self._best_weights}

    def load_state_dict(self, state):
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self._best_weights = state["best_weights"]


class ModelCheckpoint(_Monitor):
    """Save the model's weights (``cnnkit.save``, atomic) after each epoch.

    ``filepath`` may name the epoch and logs, e.g. ``"model-{epoch:02d}-{val_loss:.3f}.safetensors"``
    (``epoch`` counts from 1). With ``save_best_only`` a file is written only when
    ``monitor`` improves, so a fixed ``filepath`` always holds the best weights.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__(monitor, mode)
        self.filepath = filepath
        self.save_best_only = bool(save_best_only)

    def __call__(self, epoch, logs, model):
        from . import io

        if self.save_best_only:
            value = self.value(logs)
            if not self.improves(value):
                return False
            self.best = value
        io.save(model, str(self.filepath).format(epoch=epoch + 1, **logs))
        return False

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = float(state["best"])
