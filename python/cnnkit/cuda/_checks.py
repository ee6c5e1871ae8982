"""Argument checks shared by the ``ops_*`` modules, with ``cnnkit.functional``'s rules and messages.

The dispatch (``cnnkit._arrays``) has already put every array of a call on one CUDA device. What
is left is the op's own contract, checked here before any pointer reaches a binding:

- :func:`float32` applies functional.py's dtype policy to a CUDA array: float32 C-contiguous is
  used as is; other float and integer dtypes, and non-contiguous views, become a float32
  C-contiguous copy made by the caller's own library on its device; bool, complex and other kinds
  raise ``TypeError``;
- :func:`labels` does the same for class indices (int64);
- :func:`state` accepts only arrays an op may write into (batch norm's running statistics):
  float32, C-contiguous, of the expected shape, never converted, since an update written into a
  copy would be lost;
- :func:`ndim` and :func:`same_shape` compare shapes, naming the argument.

The scalar arguments (stride, padding, ...) are checked with functional.py's own helpers
(``_pair``, ``_conv_padding``, ``_pool_geometry``, ...), imported from ``cnnkit.functional``.
"""

from ._device import _is_torch, dtype_name, is_c_contiguous

__all__ = ["float32", "labels", "state", "optional_float32", "ndim", "same_shape"]

# dtype names the policy converts to float32 (functional.py: "fiu" kinds).
_NUMERIC = frozenset({"float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
                      "uint8", "uint16", "uint32", "uint64"})
_INTEGER = frozenset(n for n in _NUMERIC if "int" in n)


def _converted(x, dtype):
    if _is_torch(x):
        import torch

        return x.to(getattr(torch, dtype)).contiguous()
    import cupy

    with cupy.cuda.Device(x.device.id):
        return cupy.ascontiguousarray(x, dtype=dtype)


def float32(x, op, name):
    """``x`` as a float32 C-contiguous array of its own kind (a copy only where it must)."""
    kind = dtype_name(x)
    if kind == "float32" and is_c_contiguous(x):
        return x
    if kind not in _NUMERIC:
        raise TypeError(f"{op}: {name} must be a float or integer array, got dtype {kind} "
                        "(bool, complex, object and string arrays are not converted)")
    return _converted(x, "float32")


def optional_float32(x, op, name):
    """:func:`float32`, or None for None."""
    return None if x is None else float32(x, op, name)


def labels(x, op, name):
    """Class indices as an int64 C-contiguous array of ``x``'s kind."""
    kind = dtype_name(x)
    if kind not in _INTEGER:
        raise TypeError(f"{op}: {name} must be an integer array of class indices, got dtype {kind}")
    return x if kind == "int64" and is_c_contiguous(x) else _converted(x, "int64")


def state(x, op, name, shape):
    """An array ``op`` writes into: float32, C-contiguous and of ``shape``, never converted."""
    if dtype_name(x) != "float32":
        raise TypeError(f"{op}: {name} must be float32 to be updated in place, got {dtype_name(x)}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if not is_c_contiguous(x):
        raise ValueError(f"{op}: {name} must be C-contiguous to be updated in place")
    return x


def ndim(x, ndims, op, name, layout=None):
    """Raise ValueError unless ``x.ndim`` is one of ``ndims`` (an int or a tuple)."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        extra = f" ({layout})" if layout else ""
        raise ValueError(f"{op}: {name} must be {want}-D{extra}, got shape {tuple(x.shape)}")


def same_shape(a, b, op, name_a, name_b):
    """Raise ValueError unless ``a`` and ``b`` have one shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: {name_b} has shape {tuple(b.shape)}, expected {name_a}'s "
                         f"{tuple(a.shape)}")
