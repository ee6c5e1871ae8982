"""cnnkit: convolutional neural networks on native C++ kernels with a PyTorch-shaped API."""

import os as _os
import warnings as _warnings

import numpy as _np

from . import _C, data, functional, io, models, nn, optim, plan, reference, train
from .io import load, save
from ._rng import manual_seed
from .train import gradcheck
from . import autotune, checkpoint, keras

__version__ = "0.1.0"

__all__ = [
    "autotune", "data", "functional", "io", "models", "nn", "optim", "plan", "reference", "train", "checkpoint",
    "keras", "cuda",
    "load", "save", "manual_seed", "gradcheck",
    "build_info", "set_num_threads", "get_num_threads", "set_max_isa", "get_max_isa",
    "use_deterministic_algorithms", "are_deterministic_algorithms_enabled", "empty_cache",
]

# The ISA levels a cap can name, narrowest first (set_max_isa, CNNKIT_MAX_ISA, `cnnkit bench --isa`).
_ISA_LEVELS = ("scalar", "avx2", "avx512")

if _os.environ.get("CNNKIT_MAX_ISA", "") not in ("", *_ISA_LEVELS):
    # The core falls back to scalar kernels rather than refuse to load.
    _warnings.warn(
        f"CNNKIT_MAX_ISA={_os.environ['CNNKIT_MAX_ISA']!r} is not one of scalar, avx2, avx512: "
        "running the scalar kernels",
        RuntimeWarning,
        stacklevel=2,
    )
if _os.environ.get("CNNKIT_AUTOTUNE", "").lower() not in ("", "0", "1", "false", "true", "off", "on", "no", "yes"):
    _warnings.warn(
        f"CNNKIT_AUTOTUNE={_os.environ['CNNKIT_AUTOTUNE']!r} is neither 0 nor 1: autotuning stays on",
        RuntimeWarning,
        stacklevel=2,
    )


def __getattr__(name):
    # cnnkit.cuda is imported on first use: it loads the CUDA extension module, which a program
    # that never asks for a GPU need not load.
    if name == "cuda":
        import importlib

        return importlib.import_module(".cuda", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_info():
    """What this build compiled and what runs now.

    Returns a dict with ``compiled_isas``, ``detected_isa`` (the CPU's widest),
    ``max_isa`` (the cap from ``CNNKIT_MAX_ISA`` or :func:`set_max_isa`),
    ``num_threads``, ``version``, ``kernels``: the implementation each op family
    would pick now for a representative call (for conv2d the measured choice once
    one is cached, see :mod:`cnnkit.autotune`), ``autotune``: whether it measures,
    its cache file and how many choices it holds, and ``cuda``: the CUDA build
    (:func:`cnnkit.cuda.build_info`: ``built``, ``available``, ``reason`` where no
    device is usable, and with the module ``runtime_version``, ``driver_version``,
    ``architectures``, ``devices`` and ``ops``, the functional ops with CUDA kernels).
    """
    from . import cuda

    info = dict(_C.build_info())
    info["version"] = __version__
    info["cuda"] = cuda.build_info()
    info["autotune"] = {"enabled": autotune.enabled(), "cache_file": autotune.cache_file(),
                        "entries": len(autotune.entries()), "signature": _C.autotune_signature()}
    conv = {"lenet c1": ((64, 1, 28, 28), (6, 1, 5, 5), (0, 0, 0, 0), 1),
            "3x3 pad 1": ((8, 64, 56, 56), (64, 64, 3, 3), (1, 1, 1, 1), 1),
            "depthwise 3x3": ((8, 64, 56, 56), (64, 1, 3, 3), (1, 1, 1, 1), 64)}
    kernels = {"sgemm": info["sgemm"]}
    for name, (x, w, pads, groups) in conv.items():
        for backward in (False, True):
            kernels[f"conv2d{'_backward' if backward else ''} {name}"] = _C.conv2d_implementation(
                x, w, (1, 1), pads, (1, 1), groups, "auto", backward)
    kernels["pool2d"] = _C.pool2d_implementation()
    kernels["batch_norm"] = _C.batch_norm_implementation()
    kernels["activation tanh"] = _C.activation_implementation("tanh")
    kernels["softmax"] = _C.softmax_implementation(_np.zeros((2, 10), _np.float32), -1)
    info["kernels"] = kernels
    return info


def set_num_threads(n):
    """Set the number of threads every op may use (default: ``OMP_NUM_THREADS`` or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_num_threads():
    """The number of threads ops use."""
    return _C.num_threads()


def use_deterministic_algorithms(mode):
    """With ``True``, results no longer depend on the thread count, as with
    ``torch.use_deterministic_algorithms``: the conv weight gradients, which by
    default keep one partial sum per thread, sum a fixed number of shares of
    the batch in a fixed order. It also suspends the measured algorithm
    choice (:mod:`cnnkit.autotune`), whose pick may differ between thread
    counts. Every other op gives the same bits with any thread count either way."""
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms: mode must be a bool, got {type(mode).__name__}")
    _C.set_deterministic(mode)


def are_deterministic_algorithms_enabled():
    """Whether :func:`use_deterministic_algorithms` is on."""
    return _C.deterministic()


def empty_cache():
    """Free the memory kept for reuse behind cnnkit's large output arrays; returns the bytes freed.

    An op's output of 128 KiB or more lives in a block that goes back to a cache when the array
    is freed, and serves the next output of the same size in whole pages: a training step, which
    allocates the same sizes every step, then writes into memory that is already mapped instead
    of taking a page fault per 4 KiB. The cache keeps at most 1/16 of the machine's memory (blocks
    freed beyond that go back to the system at once); this frees what it holds, as
    ``torch.cuda.empty_cache`` does on a GPU.
    """
    return _C.empty_cache()


def set_max_isa(isa):
    """Cap the instruction set kernels may use: ``"scalar"``, ``"avx2"`` or ``"avx512"``.

    Kernels for wider ISAs than the CPU supports never run, whatever the cap.
    """
    _C.set_max_isa(str(isa))


def get_max_isa():
    """The current ISA cap."""
    return _C.max_isa()
