"""Module and Parameter: the base of every layer.

A layer's ``forward`` caches what its ``backward`` needs; ``backward(grad_output)``
returns the gradient for the input and *accumulates* parameter gradients into
``param.grad``. There is no autograd tape: containers chain ``backward`` calls.
"""

import datetime
import math
from collections import OrderedDict

import numpy as np

from ..io import _cast_problem
from ..keras import KerasMixin

__all__ = ["Parameter", "Module"]


def _device():
    # Imported on first use: a model that stays on the CPU never loads cnnkit.cuda.
    from ..cuda import _device

    return _device


# The type of the owner of a large array an op returns: a capsule that hands its block back to the
# native array cache (csrc/python/array_cache.h) when NumPy frees the array. (types.CapsuleType is
# Python 3.13's name for it.)
_CAPSULE = type(datetime.datetime_CAPI)


def _on_host(a):
    return type(a) is np.ndarray or not _device().is_cuda_array(a)


def _host_copy(a):
    """A NumPy copy of ``a``, wherever it lives."""
    return np.array(a, copy=True) if _on_host(a) else _device().to_host(a)


def _parse_device(device):
    """None for the CPU, the CUDA ordinal for "cuda", "cuda:N", N or a torch.device."""
    if isinstance(device, int) and not isinstance(device, bool):
        text = f"cuda:{device}"
    elif isinstance(device, str) or type(device).__name__ == "device":
        text = str(device)
    else:
        raise TypeError(f"device must be 'cpu', 'cuda', 'cuda:N' or an int, got {type(device).__name__}")
    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return None
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    from .. import cuda

    if not cuda.is_available():
        raise RuntimeError(f"cannot move to {text}: {cuda.unavailable_reason()}")
    ordinal = int(index or 0)
    if ordinal >= cuda.device_count():
        raise ValueError(f"cannot move to {text}: there are {cuda.device_count()} CUDA devices")
    return ordinal


class Parameter:
    """A trainable array: ``data`` (float32), ``grad`` (None until a backward), ``requires_grad``.

    Frozen parameters (``requires_grad=False``) receive no gradient and optimizers skip them.
    ``data`` is a NumPy array, or a CUDA array (CuPy, PyTorch) once its module moved to a GPU.
    """

    __slots__ = ("data", "grad", "requires_grad", "_grad_hooks")

    def __init__(self, data, requires_grad=True):
        if _on_host(data):
            self.data = np.ascontiguousarray(data, dtype=np.float32)
        else:
            from ..cuda import _checks

            self.data = _checks.float32(data, "Parameter", "data")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._grad_hooks = None

    @property
    def shape(self):
        return self.data.shape

    def numel(self):
        """The number of elements, as ``torch.Tensor.numel``."""
        return math.prod(self.data.shape)  # .size is a method of PyTorch tensors

    def requires_grad_(self, requires_grad=True):
        """Freeze (``False``) or unfreeze this parameter; returns it."""
        self.requires_grad = bool(requires_grad)
        return self

    def __array__(self, dtype=None, copy=None):
        """The data itself, so that a Parameter passes wherever an array is expected
        (``F.conv2d(x, layer.weight)``, ``np.asarray(p)``)."""
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            if copy is False:
                raise ValueError(f"Parameter of dtype {self.data.dtype} can not be read as {np.dtype(dtype)} "
                                 "without a copy")
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def accumulate_grad(self, grad):
        """Add ``grad`` into ``self.grad`` (allocating it on the first call)."""
        self._accumulate(grad, False)

    def _accumulate_result(self, grad):
        """:meth:`accumulate_grad` for a gradient that an op has just returned to a layer and that
        nothing else holds: the first one after ``zero_grad`` becomes ``grad`` itself instead of a
        copy. Copying cost a pass over every weight once per training step (12 MB for
        mnist_cnn's first linear layer)."""
        self._accumulate(grad, True)

    def _accumulate(self, grad, adopt):
        if not self.requires_grad or grad is None:
            return
        if self.grad is None:
            if _on_host(grad):
                # Only an array with its own memory (its own, or a cache block's capsule): a view would
                # leave its base writing into the grad.
                owned = (adopt and type(grad) is np.ndarray and (grad.base is None or type(grad.base) is _CAPSULE)
                         and grad.dtype == np.float32
                         and grad.flags.c_contiguous and grad.flags.writeable and grad.shape == self.data.shape)
                self.grad = grad if owned else np.array(grad, dtype=np.float32, copy=True)
            else:
                self.grad = _device().copy(grad)
        else:
            self.grad += grad
        if self._grad_hooks:
            for hook in list(self._grad_hooks):
                hook(self)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(param)`` after each gradient accumulated into ``grad`` (as PyTorch's method
        of this name): distributed training starts sending a gradient as soon as it is complete.
        Returns a handle whose ``remove()`` unregisters the hook."""
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        if self._grad_hooks is None:
            self._grad_hooks = []
        self._grad_hooks.append(hook)
        return _HookHandle(self._grad_hooks, hook)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, requires_grad={self.requires_grad})"


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Module(KerasMixin):
    """Base class of layers and models, shaped like ``torch.nn.Module``.

    Assigning a Parameter or Module to an attribute registers it; buffers
    (running statistics) are registered with :meth:`register_buffer`.
    Keras-style ``compile``/``fit``/``evaluate``/``predict`` come from
    :class:`cnnkit.keras.KerasMixin`.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError("Module.__init__() must be called before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            for table in (d["_parameters"], d["_modules"], d["_buffers"]):
                table.pop(name, None)
            d.pop(name, None)
            d["_parameters" if isinstance(value, Parameter) else "_modules"][name] = value
        elif name in d["_buffers"]:
            d["_buffers"][name] = value
        else:
            # The hot path: layers cache their inputs here on every forward.
            if name in d["_parameters"] or name in d["_modules"]:
                d["_parameters"].pop(name, None)
                d["_modules"].pop(name, None)
            d[name] = value

    def __getattr__(self, name):
        for table in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def add_module(self, name, module):
        """Register ``module`` (or ``None``, a placeholder skipped by traversal) as the child ``name``."""
        if not isinstance(name, str):
            raise TypeError(f"module name should be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"module name can't be empty or contain \".\", got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if name in self.__dict__ or name in self._parameters or name in self._buffers:
            raise KeyError(f"attribute {name!r} already exists")
        self._modules[name] = module

    register_module = add_module

    def register_buffer(self, name, array):
        """A named array saved in ``state_dict`` but not trained (``None`` allowed)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    # -- calling --------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output, input_grad=True):
        """Gradient for the input; accumulates parameter gradients.

        With ``input_grad=False`` (the first layer of a network) a layer may skip
        computing the input gradient and return ``None``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        recorder = _summary_recorder[0]
        if recorder is not None and not self._modules:
            recorder.append((self, args[0].shape if args else None, np.shape(out)))
        return out

    # -- traversal --------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(name, module)`` for this module and every descendant, depth first, as PyTorch.

        A module reachable along several paths is listed once, unless
        ``remove_duplicate`` is False (``state_dict`` lists every path, as PyTorch's does).
        """
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """``(name, child)`` for each direct child, each child once."""
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def apply(self, fn):
        """Call ``fn`` on every child (recursively), then on this module; returns this module.

        The PyTorch idiom for custom initialisation: ``model.apply(init_weights)``.
        """
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Freeze (``False``) or unfreeze every parameter; returns this module.

        A frozen parameter gets no gradient in ``backward`` and no optimizer
        update; the input gradient still flows through its layer, so layers
        before it keep training (fine-tuning a head on a frozen body, or the reverse).
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def named_parameters(self, prefix="", recurse=True):
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        seen = set()
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mod_prefix, module in self.named_modules(prefix=prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def zero_grad(self, set_to_none=True):
        """Clear parameter gradients (to ``None`` by default, like PyTorch)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.fill(0)

    def to(self, device, *, library=None):
        """Move every parameter, gradient and buffer to ``device`` in place; returns this module.

        ``device`` is ``"cpu"``, ``"cuda"``, ``"cuda:N"``, an ordinal N or a ``torch.device``.
        On a GPU the arrays become CuPy arrays (the ``cnnkit[cuda]`` extra) or, with
        ``library="torch"`` or where CuPy is not installed, PyTorch CUDA tensors; the layers
        and optimizers then run on them unchanged. Parameters stay the same objects, so an
        optimizer made before the move keeps updating them. Without a usable GPU,
        ``RuntimeError`` says why.
        """
        ordinal = _parse_device(device)
        if ordinal is None:
            if library is not None:
                raise ValueError(f"library={library!r} chooses the array library of a CUDA device, not of the CPU")

            def move(a):
                return np.ascontiguousarray(_device().to_host(a)) if not _on_host(a) else a
        else:
            device_module, kind = _device(), _device().array_library(library)

            def move(a):
                return device_module.to_device(a, ordinal, kind)
        for p in self.parameters():
            p.data = move(p.data)
            if p.grad is not None:
                p.grad = move(p.grad)
        for module in self.modules():
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = move(b)
        return self

    def cuda(self, device=None, *, library=None):
        """``to("cuda")`` (or ``to(f"cuda:{device}")``)."""
        return self.to("cuda" if device is None else device, library=library)

    def cpu(self):
        """``to("cpu")``: parameters, gradients and buffers back to NumPy arrays."""
        return self.to("cpu")

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- state --------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer, keyed like PyTorch (``0.weight``, ``1.running_mean``):
        NumPy arrays, also for a module on a GPU."""
        state = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for name, p in module._parameters.items():
                state[f"{prefix}.{name}" if prefix else name] = _host_copy(p.data)
            for name, b in module._buffers.items():
                if b is not None:
                    state[f"{prefix}.{name}" if prefix else name] = _host_copy(b)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into this module's parameters and buffers.

        Values may be NumPy arrays, anything ``np.asarray`` reads (PyTorch CPU
        tensors) or CUDA arrays; they are written into the module's arrays where these
        live (a module on a GPU stays there). Everything is checked before anything is written: on a key or
        shape mismatch, or a value the cast to the module's dtype would change
        (float64 ``1e300`` into float32, ``2.5`` into an integer buffer), a
        ``RuntimeError`` lists every problem and the module is unchanged. Float64
        values that merely round into float32 load. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        targets = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if value is not None:
                        targets[f"{prefix}.{name}" if prefix else name] = (module, table, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        errors = []
        staged = []
        for key, (module, table, name) in targets.items():
            if key not in state_dict:
                continue
            current = table[name]
            current_array = current.data if isinstance(current, Parameter) else current
            if _on_host(current_array):
                current_array = np.asarray(current_array)
                dtype = current_array.dtype
            else:
                dtype = np.dtype(_device().dtype_name(current_array))
            value = state_dict[key]
            value = np.asarray(value) if _on_host(value) else _device().to_host(value)
            if value.shape != tuple(current_array.shape):
                errors.append(
                    f"size mismatch for {key}: checkpoint has shape {value.shape}, "
                    f"this model has {tuple(current_array.shape)}"
                )
                continue
            if _on_host(current_array) and not current_array.flags.writeable:
                errors.append(f"{key} is read-only (a compiled InferencePlan holds this model's weights: "
                              "release it first, see cnnkit.plan)")
                continue
            problem = _cast_problem(value, dtype)
            if problem:
                errors.append(f"value change for {key}: {problem}")
                continue
            staged.append((current, current_array, value))
        if strict and (missing or unexpected):
            if missing:
                errors.append("missing keys: " + ", ".join(missing))
            if unexpected:
                errors.append("unexpected keys: " + ", ".join(unexpected))
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(errors)
            )
        for current, current_array, value in staged:
            if type(current_array) is np.ndarray:
                np.copyto(current_array, value, casting="unsafe")
            else:
                _device().copy_from_host(current_array, value)
        return missing, unexpected

    # -- description ----------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                body = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {body}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"

    def compile_inference(self, input_shape, conv_algo="measure", batch_order="measure", value_layout="measure"):
        """A native inference plan of this model (in eval mode) for batches of ``input_shape``
        (C, H, W): see :mod:`cnnkit.plan`. Its weights stay read-only while the plan lives."""
        from ..plan import compile_inference

        if any(not _on_host(p.data) for p in self.parameters()):
            raise ValueError("compile_inference: inference plans run on the CPU and this model is on a GPU; "
                             "compile model.cpu() instead")
        return compile_inference(self, input_shape, conv_algo, batch_order, value_layout)

    def flops(self, input_shape, output_shape):
        """Multiply-adds x 2 of one forward pass for these shapes (0 where negligible)."""
        return 0

    def summary(self, input_shape, file=None):
        """Print each layer's output shape, parameter count and FLOPs for one input of ``input_shape``.

        ``input_shape`` excludes the batch dimension, e.g. ``(1, 32, 32)``. Returns the rows.
        """
        rows = []
        _summary_recorder[0] = rows
        was_training = self.training
        self.eval()
        x = np.zeros((1, *input_shape), dtype=np.float32)
        first = next(self.parameters(), None)
        if first is not None and not _on_host(first.data):  # a model on a GPU gets its input there
            device = _device()
            x = device.to_device(x, device.device_index(first.data), device.library_of(first.data))
        try:
            self(x)
        finally:
            _summary_recorder[0] = None
            self.train(was_training)
        names = {id(m): name for name, m in self.named_modules()}
        table = []
        for module, in_shape, out_shape in rows:
            params = sum(p.numel() for p in module.parameters())
            table.append(
                (names.get(id(module), "?"), type(module).__name__, tuple(out_shape[1:]), params,
                 module.flops(in_shape, out_shape))
            )
        header = f"{'layer':<16}{'type':<20}{'output shape':<22}{'params':>10}{'FLOPs':>14}"
        out = [header, "-" * len(header)]
        for name, kind, shape, params, flops in table:
            out.append(f"{name:<16}{kind:<20}{str(shape):<22}{params:>10,}{flops:>14,}")
        total_params = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        out.append("-" * len(header))
        out.append(f"total params: {total_params:,} (trainable {trainable:,}); "
                   f"FLOPs per image: {sum(r[4] for r in table):,}")
        print("\n".join(out), file=file)
        return table


# The summary in progress, if any: leaf modules append (module, in_shape, out_shape).
_summary_recorder = [None]
