"""Containers beyond a chain: lists and dicts of modules, and parallel branches joined again.

The lectures draw CNNs as directed acyclic graphs. With :class:`Concat` and
:class:`Join` next to ``Sequential`` and ``Residual`` the common shapes are
one expression each:

- Inception's parallel branches, concatenated along channels:
  ``Concat(branch1x1, branch3x3, branch5x5, branch_pool)``;
- a DenseNet layer, which appends its output to everything before it:
  ``Concat(Identity(), layer)``; a dense block is a ``Sequential`` of these,
  so each layer sees the concatenation of every earlier output;
- FractalNet's joins, the element-wise mean of parallel columns:
  ``Join(column1, column2)``; ``Join(..., reduction="sum")`` sums instead
  (``Residual(body)`` is ``Join(body, Identity(), reduction="sum")``).

Branches are registered as ``"0"``, ``"1"``, ... so ``state_dict`` keys read
like ``Sequential``'s (``0.weight``, ``1.0.bias``) and a torch module holding
the same children under the same names loads them unchanged.
"""

import numpy as np

from .module import Module, _device, _on_host


def _host_or_device(outs):
    """The branch outputs as NumPy arrays, or as they are when they live on a CUDA device."""
    return [np.asarray(o) if _on_host(o) else o for o in outs]


def _check_module(module, what):
    if not isinstance(module, Module):
        raise TypeError(f"{what} must be a cnnkit.nn.Module, got {type(module).__name__}")
    return module


class ModuleList(Module):
    """A list of modules, registered as children ``"0"``, ``"1"``, ... (``torch.nn.ModuleList``).

    It has no ``forward``: the module that holds it decides how to call its items.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, index):
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"ModuleList indices must be integers or slices, not {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a ModuleList of length {n}")
        return str(int(index) % n)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._index(index)]

    def __setitem__(self, index, module):
        self._modules[self._index(index)] = _check_module(module, "a ModuleList item")

    def __delitem__(self, index):
        items = list(self._modules.values())
        del items[index if isinstance(index, slice) else int(self._index(index))]
        self._renumber(items)

    def _renumber(self, items):
        self._modules.clear()
        for i, module in enumerate(items):
            self._modules[str(i)] = module

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self._modules[str(len(self))] = _check_module(module, "a ModuleList item")
        return self

    def extend(self, modules):
        if not hasattr(modules, "__iter__"):
            raise TypeError(f"ModuleList.extend takes an iterable of modules, got {type(modules).__name__}")
        for module in list(modules):
            self.append(module)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, _check_module(module, "a ModuleList item"))
        self._renumber(items)


class ModuleDict(Module):
    """An ordered dict of modules, registered under their keys (``torch.nn.ModuleDict``)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, _check_module(module, f"ModuleDict[{key!r}]"))

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        """Add ``(key, module)`` pairs from a mapping or an iterable of pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"ModuleDict.update needs (key, module) pairs, got {pair!r}")
            self[pair[0]] = pair[1]


class _Branches(Module):
    """Modules applied to the same input; subclasses combine their outputs and split the gradient."""

    def __init__(self, branches):
        super().__init__()
        if not branches:
            raise ValueError(f"{type(self).__name__} needs at least one branch")
        for i, branch in enumerate(branches):
            setattr(self, str(i), _check_module(branch, f"branch {i}"))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def _backward_branches(self, grads, input_grad):
        """Each branch's backward with its gradient; the input gradient is their sum."""
        total = None
        for branch, grad in zip(self._modules.values(), grads):
            dx = branch.backward(grad, input_grad=input_grad)
            if input_grad:
                total = dx if total is None else total + dx
        return total


class Concat(_Branches):
    """Every branch applied to the input, the outputs concatenated along ``dim`` (channels by default).

    Backward hands each branch its slice of the gradient and sums the branches'
    input gradients. The branches' outputs must agree on every other dimension.
    """

    def __init__(self, *branches, dim=1):
        super().__init__(branches)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        self.dim = int(dim)

    def forward(self, x):
        outs = _host_or_device([branch(x) for branch in self._modules.values()])
        ndim = outs[0].ndim
        if not -ndim <= self.dim < ndim:
            raise ValueError(f"Concat: dim={self.dim} is out of range for {ndim}-D branch outputs")
        axis = self.dim % ndim
        shapes = [tuple(o.shape) for o in outs]
        if any(len(s) != ndim or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
            raise ValueError(f"Concat: branch outputs must match except along dim {self.dim}, got shapes {shapes}")
        self._bounds = np.cumsum([s[axis] for s in shapes])[:-1]
        if type(outs[0]) is np.ndarray:
            return np.concatenate(outs, axis=axis)
        return _device().concatenate(outs, axis)

    def backward(self, grad_output, input_grad=True):
        if _on_host(grad_output):
            grad_output = np.asarray(grad_output)
            grads = np.split(grad_output, self._bounds, axis=self.dim % grad_output.ndim)
            return self._backward_branches([np.ascontiguousarray(g) for g in grads], input_grad)
        axis = self.dim % grad_output.ndim
        edges = [0, *self._bounds.tolist(), grad_output.shape[axis]]
        grads = [grad_output[(slice(None),) * axis + (slice(a, b),)] for a, b in zip(edges, edges[1:])]
        return self._backward_branches([_device().contiguous(g) for g in grads], input_grad)

    def extra_repr(self):
        return f"dim={self.dim}"


class Join(_Branches):
    """Every branch applied to the input, the outputs combined element-wise: their mean
    (FractalNet's join, the default) or their sum (``reduction="sum"``).

    Backward hands every branch the gradient (divided by the branch count for
    the mean) and sums the branches' input gradients.
    """

    def __init__(self, *branches, reduction="mean"):
        super().__init__(branches)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def forward(self, x):
        outs = _host_or_device([branch(x) for branch in self._modules.values()])
        shapes = [tuple(o.shape) for o in outs]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"Join: branch outputs must have one shape, got {shapes}")
        # On a device the branches' outputs are already float32 (the CUDA ops return nothing else).
        total = outs[0].astype(np.float32, copy=True) if type(outs[0]) is np.ndarray else _device().copy(outs[0])
        for out in outs[1:]:
            total += out
        if self.reduction == "mean":
            total *= np.float32(1.0 / len(outs))
        return total

    def backward(self, grad_output, input_grad=True):
        grad = np.asarray(grad_output, dtype=np.float32) if _on_host(grad_output) else grad_output
        if self.reduction == "mean":
            grad = grad * np.float32(1.0 / len(self))
        return self._backward_branches([grad] * len(self), input_grad)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
