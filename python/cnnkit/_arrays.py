"""Other libraries' arrays in and out of ``cnnkit.functional``, without copies.

:func:`accept_any_array` wraps every public op of ``cnnkit.functional``. NumPy arrays and plain
Python values go straight through. An argument that exports ``__dlpack__`` on the CPU (a PyTorch
tensor, a JAX array, any DLPack 1.x producer) is read as a NumPy array sharing its memory
(``np.from_dlpack``; PyTorch's own ``Tensor.numpy``), so the ops' own dtype and layout rules
apply to it unchanged, and arrays an op writes in place (batch norm's running statistics) are
updated in the caller's memory. The op's array results are handed, again without copies, to the
kind of the first such argument: ``torch.from_numpy`` for PyTorch tensors, the array namespace's
``from_dlpack`` for array-API arrays (JAX), the type's own ``from_dlpack`` where it has one, else
they stay NumPy arrays. Python scalars (a reduced loss) stay Python scalars. Arrays inside lists
or tuples are not converted: NumPy reads them, and results stay NumPy arrays.

A call with any CUDA argument (a CuPy array, a PyTorch CUDA tensor: an argument exporting
``__dlpack__`` on a CUDA device, found by the same readers at no cost to the CPU path) goes to the
op of the same name in ``cnnkit.cuda``'s ``ops_*`` modules instead (``cnnkit.cuda.supported_ops()``,
collected on the first such call), after checking that no argument is on another device: a CPU array beside a CUDA one, or arrays on two
CUDA devices, raise ``ValueError`` naming both. An op without a CUDA kernel raises
``NotImplementedError``; a CUDA argument where cnnkit cannot use the GPU raises ``RuntimeError``
saying why (``cnnkit.cuda.unavailable_reason()``).

The kind of an argument is told from its type's attributes and module name, so nothing here
imports PyTorch or JAX.
"""

import functools
import inspect
import sys

import numpy as np

# Types that never need conversion, tested by identity first: a call with NumPy arrays and plain
# Python arguments costs one set lookup per argument.
_PLAIN = frozenset({np.ndarray, int, float, bool, str, tuple, list, type(None)})

# DLPack device types NumPy reads: CPU memory, pinned and managed memory the CPU can address.
_HOST_DEVICES = frozenset({1, 3, 11, 13})
_DEVICE_NAMES = {2: "cuda", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi", 10: "rocm", 12: "ext_dev",
                 14: "oneapi", 15: "webgpu", 16: "hexagon", 17: "maia"}

# type -> (reader: the value as a NumPy array, exporter: a NumPy array as that kind, or None)
_KINDS = {}


def _is_foreign(value):
    return type(value) not in _PLAIN and not isinstance(value, np.ndarray) and hasattr(type(value), "__dlpack__")


def _refuse_device(op, name, device):
    raise ValueError(f"{op}: {name} is on device {device}; cnnkit runs on the CPU and on CUDA devices only "
                     "(move the array to the CPU first, e.g. tensor.cpu())")


def _unreadable(op, name, value, error):
    return TypeError(f"{op}: {name} ({type(value).__module__}.{type(value).__name__}) cannot be read as a "
                     f"NumPy array: {error}")


def _read_torch(value, op, name):
    # PyTorch's own NumPy bridge shares memory as DLPack does, at a fraction of the cost of
    # torch's Python-level __dlpack__ and __dlpack_device__.
    if value.device.type != "cpu":
        if value.is_cuda:
            raise _OnCuda
        _refuse_device(op, name, value.device)
    if value.requires_grad:
        value = value.detach()  # PyTorch exports no tensor that requires grad
    try:
        return value.numpy()
    except (TypeError, RuntimeError) as e:
        raise _unreadable(op, name, value, e) from e


def _read_dlpack(value, op, name):
    device_type, device_id = value.__dlpack_device__()
    if device_type == 2:  # kDLCUDA
        raise _OnCuda
    if device_type not in _HOST_DEVICES:
        _refuse_device(op, name, f"{_DEVICE_NAMES.get(device_type, f'DLPack device type {device_type}')}:{device_id}")
    try:
        return np.from_dlpack(value)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise _unreadable(op, name, value, e) from e


class _OnCuda(Exception):
    """Raised by a reader that finds its argument in CUDA memory: the call goes to the CUDA twin."""


def _is_torch_type(cls):
    return any(base.__module__.partition(".")[0] == "torch" for base in cls.__mro__)


def _kind(value):
    """How to read ``value`` and how to return arrays of its kind: (reader, exporter or None)."""
    cls = type(value)
    kind = _KINDS.get(cls)
    if kind is None:
        if _is_torch_type(cls):
            kind = (_read_torch, sys.modules["torch"].from_numpy)
        elif hasattr(value, "__array_namespace__"):
            kind = (_read_dlpack, value.__array_namespace__().from_dlpack)
        else:
            kind = (_read_dlpack, getattr(cls, "from_dlpack", None))
        _KINDS[cls] = kind
    return kind


def _export(result, export):
    if type(result) is np.ndarray:
        return export(result)
    if type(result) is tuple:
        return tuple(_export(r, export) for r in result)
    return result


def _describe_host(value):
    if isinstance(value, np.ndarray):
        return "a NumPy array on the CPU"
    return f"a {type(value).__module__}.{type(value).__name__} on the CPU"


def _call_cuda(op, slots, args, kwargs):
    """``op`` with CUDA arguments: every array on one CUDA device, then the op's CUDA twin."""
    from . import cuda
    from .cuda import _device

    on_device = on_host = None  # (argument name, device)
    for where, name, store in slots:
        value = store[where]
        if type(value) in _PLAIN and type(value) is not np.ndarray:
            continue
        if _device.is_cuda_array(value):
            device = _device.device_index(value)
            if on_device is not None and device != on_device[1]:
                raise ValueError(f"{op.__name__}: {on_device[0]} is on cuda:{on_device[1]} but {name} is on "
                                 f"cuda:{device}; every array of one call must be on the same device")
            on_device = on_device or (name, device)
            if _device.requires_grad(value):
                store[where] = value.detach()  # PyTorch exports no tensor that requires grad
        elif isinstance(value, np.ndarray) or _is_foreign(value):
            on_host = on_host or (name, _describe_host(value))
    if on_host is not None:
        raise ValueError(f"{op.__name__}: {on_device[0]} is on cuda:{on_device[1]} but {on_host[0]} is "
                         f"{on_host[1]}; move both to one device (e.g. cupy.asarray(x) or tensor.cuda())")
    if not cuda.is_available():
        raise RuntimeError(f"{op.__name__}: {on_device[0]} is a CUDA array, but cnnkit cannot run on the GPU "
                           f"here: {cuda.unavailable_reason()}")
    twin = cuda._ops().get(op.__name__)
    if twin is None:
        raise NotImplementedError(f"{op.__name__} has no CUDA kernel in cnnkit yet: call it with CPU arrays")
    return twin(*args, **kwargs)


def _call_foreign(op, names, args, kwargs):
    """``op`` on foreign arrays: read them as NumPy arrays, hand the results back in the first one's
    kind; with a CUDA argument, the op's CUDA twin instead."""
    slots = [(i, names[i], args) for i in range(len(args))] + [(k, k, kwargs) for k in kwargs]
    exporters, read_so_far = [], []
    for where, name, store in slots:
        value = store[where]
        if _is_foreign(value):
            read, exporter = _kind(value)
            exporters.append(exporter)
            try:
                store[where] = read(value, op.__name__, name)
            except _OnCuda:
                # The readers find CUDA arrays at no extra cost on the CPU path; what they read
                # before is put back as it came, for the twin and for its error messages.
                for store_before, where_before, value_before in read_so_far:
                    store_before[where_before] = value_before
                return _call_cuda(op, slots, args, kwargs)
            read_so_far.append((store, where, value))
    result = op(*args, **kwargs)
    return result if not exporters or exporters[0] is None else _export(result, exporters[0])


def accept_any_array(op):
    """``op`` taking any CPU array (NumPy or DLPack) and returning results of the caller's kind.

    The wrapper is generated with ``op``'s own parameters, so a call with NumPy arrays costs one
    type test per argument and no packing: a generic ``*args, **kwargs`` wrapper that loops over
    its arguments costs two to three times as much on conv2d's call path, which every layer pays.
    """
    params = inspect.signature(op).parameters.values()
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise TypeError(f"{op.__name__}: an op taking *args or **kwargs cannot be wrapped")
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    header = ", ".join(positional + ["*"] + keyword if keyword else positional)
    forward = ", ".join(positional + [f"{k}={k}" for k in keyword])
    # The generated code's own names start with _w_, so no parameter of an op can shadow them.
    plain = " and ".join([f"_w_type({n}) in _w_plain" for n in positional + keyword] or ["True"])
    source = (f"def {op.__name__}({header}):\n"
              f"    if {plain}:\n"
              f"        return _w_op({forward})\n"
              f"    return _w_foreign(_w_op, {positional!r}, [{', '.join(positional)}], "
              f"{{{', '.join(f'{k!r}: {k}' for k in keyword)}}})\n")
    namespace = {"_w_op": op, "_w_type": type, "_w_plain": _PLAIN, "_w_foreign": _call_foreign}
    exec(compile(source, f"<cnnkit._arrays wrapper of {op.__name__}>", "exec"), namespace)
    call = namespace[op.__name__]
    call.__defaults__, call.__kwdefaults__ = op.__defaults__, op.__kwdefaults__
    return functools.wraps(op)(call)


def wrap_public_functions(namespace, module_name):
    """Wrap every public function defined in the module whose globals are ``namespace``."""
    for name, value in list(namespace.items()):
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module_name:
            namespace[name] = accept_any_array(value)
