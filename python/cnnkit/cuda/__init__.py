"""cnnkit on NVIDIA GPUs.

The CUDA kernels live in their own extension module, ``cnnkit._cuda``, built only where a CUDA
toolkit was found, so ``import cnnkit`` never needs a GPU, a driver or the CUDA libraries. Device
arrays are the caller's own: CuPy arrays and PyTorch CUDA tensors go into ``cnnkit.functional``
and come back as the same kind, on the caller's current stream.
"""

import importlib
import inspect
import pkgutil

try:
    from .. import _cuda
except ImportError as _error:  # a CPU-only build
    _cuda = None
    _why_not_built = f"cnnkit was built without CUDA ({_error})"
else:
    _why_not_built = ""

__all__ = ["is_built", "is_available", "device_count", "unavailable_reason", "supported_ops", "build_info"]


def is_built():
    """Whether this build of cnnkit has the CUDA module."""
    return _cuda is not None


def device_count():
    """The number of CUDA devices cnnkit can use (0 without the module, a driver or a GPU)."""
    return _cuda.device_count()[0] if _cuda is not None else 0


def is_available():
    """Whether cnnkit can run kernels on a GPU here."""
    return device_count() > 0


def unavailable_reason():
    """Why :func:`is_available` is false ("" when it is true)."""
    if _cuda is None:
        return _why_not_built
    return _cuda.device_count()[1]


_registry = None


def _ops():
    """{name: function} of every public function of the ``ops_*`` modules: the CUDA twins of
    ``cnnkit.functional``'s ops, collected (and their modules imported) on the first call.
    ``ops_optim`` is not among them: its fused optimizer steps are called by ``cnnkit.optim``."""
    global _registry
    if _registry is None:
        if _cuda is None:
            raise RuntimeError(_why_not_built)
        found = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if not info.name.startswith("ops_") or info.name == "ops_optim":
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            for name, value in vars(module).items():
                if name.startswith("_") or not inspect.isfunction(value) or value.__module__ != module.__name__:
                    continue
                if name in found:
                    raise RuntimeError(f"cnnkit.cuda: {name} is defined in both {found[name].__module__} "
                                       f"and {module.__name__}")
                found[name] = value
        _registry = found
    return _registry


def supported_ops():
    """The ``cnnkit.functional`` ops that run on CUDA arrays (none without the CUDA module)."""
    return sorted(_ops()) if _cuda is not None else []


def build_info():
    """The CUDA side of :func:`cnnkit.build_info`: whether the module was built, its CUDA runtime
    version and target architectures, the devices found (or why none) and the ops with kernels."""
    if _cuda is None:
        return {"built": False, "available": False, "reason": _why_not_built}
    count, reason = _cuda.device_count()
    info = {
        "built": True,
        "runtime_version": _version(_cuda.runtime_version()),
        "driver_version": _version(_cuda.driver_version()),
        "architectures": _cuda.architectures.split(),
        "available": count > 0,
        "reason": reason,
        "devices": [_cuda.device_properties(d) for d in range(count)],
        "ops": supported_ops(),
    }
    return info


def _version(v):
    """CUDA's integer version (12040) as "12.4"; "none" for 0 (no driver)."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"
