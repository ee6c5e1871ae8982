"""Training checkpoints: everything a killed run needs to continue to the same weights.

A checkpoint is one safetensors file, ``checkpoint.safetensors`` in the run's
checkpoint directory, written atomically like the weights (a temporary file,
fsynced, renamed over the old one), so a run killed while saving keeps its
previous checkpoint. Its tensors are the model's state dict (``model.<key>``),
the optimizer's arrays (``optimizer.<index>.<name>``: moments, momentum buffers)
and, for a checkpoint taken inside an epoch, that epoch's sample order
(``order``). Its ``"cnnkit.checkpoint"`` metadata entry is JSON with the rest:
the optimizer's parameter groups and step counts, the scheduler's state, the
epoch and the number of batches done in it, the running sums of that epoch,
the history so far, the states of the random generators (cnnkit's process-wide
one and ``fit``'s own, when it has one), the states of callbacks that have one
(EarlyStopping, ModelCheckpoint) and ``info``, whatever the caller keeps beside
the run (``cnnkit train`` keeps its arguments and the normalisation).

Resuming restores all of it, so the continued run draws the same batches,
augmentations and dropout masks and ends with the same bits as a run that was
never stopped (same code, same thread count).
"""

import json
import os

import numpy as np

from . import io
from ._rng import default_generator

__all__ = ["path_in", "save", "load", "restore"]

FILE = "checkpoint.safetensors"
_KEY = "cnnkit.checkpoint"
_FORMAT = 1


def path_in(directory):
    """The checkpoint file of a checkpoint directory."""
    return os.path.join(os.fspath(directory), FILE)


def save(directory, model, optimizer, scheduler=None, *, epoch, batch=0, order=None, sums=None, history=None,
         generator=None, callbacks=None, info=None, stopped=False):
    """Write a checkpoint of a run into ``directory`` (created if needed), atomically.

    ``epoch`` is the epoch in progress (0-based) and ``batch`` the number of its
    batches already done; ``order`` is that epoch's sample order when ``batch > 0``
    and ``sums`` its running ``(loss sum, correct, seen)``. ``history`` is a
    :class:`cnnkit.train.History`, ``generator`` fit's own generator when it is not
    cnnkit's default one, ``info`` any JSON-serialisable value, and ``stopped``
    marks a run that a callback ended early (resuming it trains no further).
    Of ``callbacks``, those with ``state_dict()`` (EarlyStopping's best value,
    patience count and best weights) are saved too: values that are dicts of
    arrays as tensors (``callbacks.<index>.<key>.<name>``), the rest as JSON.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    scalars = {}
    for index, entries in optim_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    if order is not None:
        tensors["order"] = np.asarray(order, dtype=np.int64)
    callback_states = {}
    for index, cb in enumerate(callbacks or ()):
        if hasattr(cb, "state_dict"):
            state = {}
            for key, value in cb.state_dict().items():
                if isinstance(value, dict):
                    tensors.update({f"callbacks.{index}.{key}.{name}": a for name, a in value.items()})
                    value = {}
                state[key] = value
            callback_states[str(index)] = {"type": type(cb).__name__, "state": state}
    meta = {
        "format": _FORMAT,
        "epoch": int(epoch),
        "batch": int(batch),
        "stopped": bool(stopped),
        "sums": list(sums) if sums is not None else None,
        "optimizer": {"param_groups": optim_state["param_groups"], "scalars": scalars},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "history": None if history is None else {"history": history.history, "epochs": history.epochs},
        "callbacks": callback_states,
        "rng": {"default": default_generator().bit_generator.state,
                "fit": None if generator is None else generator.bit_generator.state},
        "info": info,
    }
    try:
        text = json.dumps(meta)
    except TypeError as e:
        raise TypeError(f"checkpoint: the scheduler's state and info must be JSON-serialisable ({e})") from None
    os.makedirs(os.fspath(directory), exist_ok=True)
    io.save_state_dict(tensors, path_in(directory), metadata={_KEY: text})


def load(directory):
    """Read the checkpoint in ``directory``: a dict with ``"model"`` (a state dict),
    ``"optimizer"`` (an optimizer state dict), ``"order"`` (None between epochs) and
    the metadata entries described in the module's docstring.

    Raises FileNotFoundError when there is none and ValueError naming the file
    when it is not a cnnkit checkpoint.
    """
    path = path_in(directory)
    tensors, metadata = io.load_state_dict_file(path, with_metadata=True)
    try:
        meta = json.loads((metadata or {})[_KEY])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: not a cnnkit training checkpoint (no valid {_KEY!r} metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"this cnnkit reads format {_FORMAT}")
    try:
        return _assemble(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: a damaged cnnkit checkpoint ({type(e).__name__}: {e})") from None


def _assemble(meta, tensors):
    """The metadata with the tensors put back in their places."""
    state = {}
    for index, entries in meta["optimizer"]["scalars"].items():
        state[int(index)] = dict(entries)
    model = {}
    for key, value in tensors.items():
        section, _, name = key.partition(".")
        if section == "model":
            model[name] = value
        elif section == "optimizer":
            index, _, entry = name.partition(".")
            state.setdefault(int(index), {})[entry] = value
        elif section == "callbacks":
            index, key, entry = name.split(".", 2)
            meta["callbacks"][index]["state"][key][entry] = value
    meta["model"] = model
    meta["optimizer"] = {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
    meta["order"] = tensors.get("order")
    # A missing entry fails here, not halfway through a resume.
    missing = [k for k in ("epoch", "batch", "stopped", "sums", "scheduler", "history", "rng", "info") if k not in meta]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    return meta


def restore(checkpoint, model, optimizer, scheduler=None, generator=None, callbacks=None):
    """Load a checkpoint returned by :func:`load` into the objects of a run.

    Restores the model, the optimizer, the scheduler, the random generators
    (cnnkit's default one and, when given, fit's own ``generator``) and the
    callbacks that saved a state (the same kinds must sit at the same places in
    ``callbacks``).
    """
    saved_callbacks = checkpoint["callbacks"]
    for index, cb in enumerate(callbacks or ()):
        saved = saved_callbacks.get(str(index))
        if hasattr(cb, "load_state_dict") and saved is not None:
            if saved["type"] != type(cb).__name__:
                raise ValueError(f"the checkpoint's callback {index} is a {saved['type']}, "
                                 f"this run's is a {type(cb).__name__}")
            cb.load_state_dict(saved["state"])
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    default_generator().bit_generator.state = checkpoint["rng"]["default"]
    if generator is not None and checkpoint["rng"]["fit"] is not None:
        generator.bit_generator.state = checkpoint["rng"]["fit"]
