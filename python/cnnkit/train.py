"""The training loop: ``fit``, ``evaluate``, ``predict``, and ``gradcheck`` for debugging layers."""

import json
import os
import sys
import time

import numpy as np

from . import distributed
from ._rng import default_generator
from .data import DistributedSampler

__all__ = ["History", "fit", "predict", "evaluate", "gradcheck"]


class History:
    """Per-epoch records of a ``fit``: ``history["loss"]``, ``"accuracy"``, ``"val_loss"``,
    ``"val_accuracy"``, ``"lr"`` and ``"time"`` (seconds), each a list with one value per epoch."""

    def __init__(self):
        self.history = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")}
        self.epochs = 0

    def append(self, logs):
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.epochs += 1

    def __getitem__(self, key):
        return self.history[key]

    def to_dict(self):
        return {k: list(v) for k, v in self.history.items() if v}

    def save_json(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


def _check_data(data, name):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (images, labels)")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
    return x, y


def _placement(model):
    """``(ordinal, library)`` of a model whose parameters live on a GPU (``model.to("cuda")``),
    None for a model on the CPU: batches go where the parameters are."""
    for p in model.parameters():
        if type(p.data) is np.ndarray:
            return None
        from .cuda import _device

        return (_device.device_index(p.data), _device.library_of(p.data)) if _device.is_cuda_array(p.data) else None
    return None


def _to_model(batch, placement):
    if placement is None:
        return batch
    from .cuda import _device

    return _device.to_device(batch, *placement)


def _host(out):
    if type(out) is np.ndarray:
        return out
    from .cuda import _device

    return _device.to_host(out)


def _correct(out, labels):
    """How many rows of ``out`` (N, C) have their largest value at ``labels`` (N,)."""
    return int((out.argmax(axis=1) == labels).sum()) if out.ndim == 2 and labels.ndim == 1 else 0


# No rate field: it pushed the running loss and accuracy past the edge of an 80-column terminal.
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"


def _progress(total, desc, verbose, initial=0):
    if verbose < 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a comfort, not a requirement
        return None
    return tqdm(total=total, desc=desc, initial=initial, leave=True, file=sys.stderr, dynamic_ncols=True,
                bar_format=_BAR_FORMAT)


def _format_logs(logs, keys):
    return ", ".join(f"{k}={logs[k]:.4g}" if k == "lr" else f"{k}={logs[k]:.4f}" for k in keys if k in logs)


def fit(model, loss, optimizer, train, epochs, batch_size, val=None, scheduler=None, augment=None,
        callbacks=None, verbose=1, generator=None, checkpoint_dir=None, resume=False, checkpoint_every=None,
        checkpoint_info=None):
    """Train ``model`` with mini-batch gradient descent and return a :class:`History`.

    ``train`` and ``val`` are ``(images, labels)`` pairs. Each epoch shuffles the
    training set (with ``generator`` or cnnkit's seeded default), applies ``augment``
    (a callable on a batch of images) when given, and runs forward, ``loss``,
    backward and ``optimizer.step()`` per batch. ``scheduler.step()`` runs after each
    epoch. Each callback is called as ``cb(epoch, logs, model)`` after every epoch;
    one that returns True stops training. Callbacks with an ``on_train_end(model)``
    method have it called when training ends. ``verbose=1`` shows a tqdm bar with the
    running ``loss`` and ``accuracy`` and, after each epoch, a line with the
    validation numbers, the learning rate and the time; ``verbose=0`` prints nothing.

    With ``checkpoint_dir`` a checkpoint (:mod:`cnnkit.checkpoint`) is written there
    after every epoch and, with ``checkpoint_every=k``, after every k batches inside
    an epoch. ``resume=True`` continues from the checkpoint found there (a fresh
    start when there is none; nothing more when a callback had stopped the run):
    a run killed at any point and resumed with the same arguments ends with the
    same weights as one never interrupted. Callbacks with ``state_dict`` and
    ``load_state_dict`` (EarlyStopping, ModelCheckpoint) are checkpointed with
    the run; others start afresh on resume.
    ``checkpoint_info`` (JSON-serialisable) is stored in the checkpoint as ``"info"``.

    A model moved to a GPU (``model.to("cuda")``) trains there: each batch is augmented on the
    host, then copied to the parameters' device and library (CuPy or PyTorch).

    A :class:`cnnkit.distributed.DistributedDataParallel` model under several ranks trains
    data-parallel: each epoch every rank takes its shard of ``train``
    (:class:`cnnkit.data.DistributedSampler`, shuffled from a seed rank 0 draws from the
    generator), ``batch_size`` is per rank, only rank 0 shows the bar and writes checkpoints,
    and the logged metrics are those of all ranks together (on every rank). A resumed
    data-parallel run continues from the checkpoint's weights and optimizer state, but its
    shards are drawn afresh, so it is not bit-identical to an uninterrupted one.
    """
    from . import checkpoint

    x, y = _check_data(train, "train")
    if val is not None:
        val = _check_data(val, "val")
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 batches, got {checkpoint_every}")
    if (resume or checkpoint_every is not None) and checkpoint_dir is None:
        raise ValueError("resume and checkpoint_every need a checkpoint_dir")
    rng = generator or default_generator()
    own_rng = rng if rng is not default_generator() else None
    history = History()
    placement = _placement(model)
    sampler = None
    if distributed._is_data_parallel(model):
        seed = distributed.broadcast(np.array(rng.integers(2**31)))
        sampler = DistributedSampler(x, seed=int(seed))
        verbose = verbose if distributed.rank() == 0 else 0
    n_samples = len(x) if sampler is None else len(sampler)
    n_batches = (n_samples + batch_size - 1) // batch_size
    # Checkpoints hold the wrapped model's own keys (no "module." prefix), so a data-parallel
    # run resumes alone or under any number of ranks.
    weights = model.module if isinstance(model, distributed.DistributedDataParallel) else model
    first_epoch, first_batch, order, sums = 0, 0, None, (0.0, 0, 0)
    if resume and os.path.exists(checkpoint.path_in(checkpoint_dir)):
        saved = checkpoint.load(checkpoint_dir)
        if saved["order"] is not None and len(saved["order"]) != n_samples:
            raise ValueError(f"the checkpoint in {checkpoint_dir} was taken on {len(saved['order'])} training "
                             f"samples, this call has {n_samples}")
        checkpoint.restore(saved, weights, optimizer, scheduler, own_rng, callbacks)
        if saved["history"] is not None:
            history.history, history.epochs = saved["history"]["history"], saved["history"]["epochs"]
        if saved["stopped"]:
            return history
        first_epoch, first_batch, order = saved["epoch"], saved["batch"], saved["order"]
        sums = tuple(saved["sums"]) if saved["sums"] is not None else sums

    def save(epoch, batch=0, order=None, sums=None, stopped=False):
        if distributed.rank() == 0:
            checkpoint.save(checkpoint_dir, weights, optimizer, scheduler, epoch=epoch, batch=batch, order=order,
                            sums=sums, history=history, generator=own_rng, callbacks=callbacks,
                            info=checkpoint_info, stopped=stopped)

    for epoch in range(first_epoch, epochs):
        model.train()
        start = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = np.fromiter(sampler, np.int64, len(sampler))
        elif order is None:
            order = rng.permutation(len(x))
        bar = _progress(n_batches, f"epoch {epoch + 1}/{epochs}", verbose, initial=first_batch)
        total_loss, correct, seen = sums
        for b in range(first_batch, n_batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb)
            xb, yb = _to_model(xb, placement), _to_model(yb, placement)
            out = model(xb)
            batch_loss = loss(out, yb)
            optimizer.zero_grad()
            model.backward(loss.backward(), input_grad=False)
            optimizer.step()
            total_loss += batch_loss * len(index)
            correct += _correct(out, yb)
            seen += len(index)
            if bar is not None:
                bar.set_postfix_str(f"loss={total_loss / seen:.4f}, accuracy={correct / seen:.4f}", refresh=False)
                bar.update(1)
            if checkpoint_every is not None and (b + 1) % checkpoint_every == 0 and b + 1 < n_batches:
                save(epoch, b + 1, order, (total_loss, correct, seen))
        first_batch, order, sums = 0, None, (0.0, 0, 0)
        if sampler is not None:
            total_loss, correct, seen = distributed._sum_over_ranks(total_loss, correct, seen)
        logs = {
            "loss": total_loss / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if val is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluate(model, loss, val, batch_size=max(batch_size, 256))
        logs["time"] = time.perf_counter() - start
        if bar is not None:
            bar.close()
            # A line of its own: on the bar's line the validation numbers ran off an 80-column terminal.
            print(f"  {_format_logs(logs, ('val_loss', 'val_accuracy', 'lr'))}, {logs['time']:.1f}s",
                  file=sys.stderr, flush=True)
        history.append(logs)
        if scheduler is not None:
            scheduler.step()
        stop = bool(callbacks) and any(cb(epoch, logs, model) for cb in callbacks)
        if checkpoint_dir is not None:
            save(epoch + 1, stopped=stop)
        if stop:
            break
    for cb in callbacks or ():
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(model)
    return history


def predict(model, images, batch_size=256):
    """The model's outputs for ``images`` in eval mode, batch by batch, as a NumPy array (also for a
    model on a GPU, to which each batch is copied)."""
    model.eval()
    images = np.asarray(images)
    placement = _placement(model)
    outs = [_host(model(_to_model(images[i : i + batch_size], placement)))
            for i in range(0, len(images), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def evaluate(model, loss, data, batch_size=256):
    """``(mean loss, accuracy)`` of ``model`` on ``(images, labels)`` in eval mode.

    A :class:`cnnkit.distributed.DistributedDataParallel` model under several ranks makes this
    a collective: each rank evaluates its own slice of ``data`` and every rank returns the
    metrics of the whole of it (exact counts, no padding). A model on a GPU is evaluated there.
    """
    x, y = _check_data(data, "data")
    count = len(x)
    collective = distributed._is_data_parallel(model)
    if collective:
        start, stop = distributed._slice_of(count)
        x, y = x[start:stop], y[start:stop]
    model.eval()
    placement = _placement(model)
    total = correct = 0.0
    for i in range(0, len(x), batch_size):
        yb = _to_model(y[i : i + batch_size], placement)
        out = model(_to_model(x[i : i + batch_size], placement))
        total += loss(out, yb) * len(yb)
        correct += _correct(out, yb)
    if collective:
        total, correct = distributed._sum_over_ranks(total, correct)
    n = max(count, 1)
    return total / n, correct / n


def gradcheck(module, input, eps=1e-2, samples=20, tolerance=2e-2, generator=None):
    """Compare ``module.backward`` with central finite differences (the lectures' debugging advice).

    The scalar checked is ``sum(g * module(x))`` for a fixed random ``g``. For up to
    ``samples`` random coordinates of the input and of every trainable parameter
    the analytic gradient is compared with ``(f(v + eps) - f(v - eps)) / (2 eps)``
    using the relative error ``|a - n| / max(|a|, |n|, 1e-3)``. The module runs in
    float32, so ``eps`` is large and the tolerance loose: kinks (ReLU at 0, max
    pooling ties) within ``eps`` of a sample can fail legitimately.

    Returns ``(ok, worst)``: whether every relative error is within ``tolerance``
    and a dict of the worst error per tensor (``"input"`` and parameter names).
    """
    rng = generator or default_generator()
    x = np.array(input, dtype=np.float32, copy=True)
    out = module(x)
    g = rng.standard_normal(np.shape(out)).astype(np.float32)
    module.zero_grad()
    dx = module.backward(g)

    def f():
        return float(np.sum(g.astype(np.float64) * module(x)))

    checks = [("input", x, dx)]
    checks += [(n, p.data, p.grad) for n, p in module.named_parameters() if p.requires_grad]
    worst = {}
    for name, array, analytic in checks:
        analytic = np.zeros_like(array) if analytic is None else np.asarray(analytic)
        flat, grad_flat = array.reshape(-1), analytic.reshape(-1)
        picks = rng.choice(flat.size, size=min(samples, flat.size), replace=False) if flat.size else []
        errors = []
        for i in picks:
            saved = flat[i]
            flat[i] = saved + eps
            up = f()
            flat[i] = saved - eps
            down = f()
            flat[i] = saved
            numeric = (up - down) / (2 * eps)
            a = float(grad_flat[i])
            errors.append(abs(a - numeric) / max(abs(a), abs(numeric), 1e-3))
        worst[name] = max(errors, default=0.0)
    return all(e <= tolerance for e in worst.values()), worst
