"""cnnkit: convolutional neural networks on native C++ kernels with a PyTorch-shaped API."""

from . import _C, data, functional, io, models, nn, optim, reference, train
from .io import load, save
from .random import manual_seed
from .train import gradcheck

__version__ = "0.1.0"


def build_info():
    """What this build compiled and what runs now.

    Returns a dict with ``compiled_isas``, ``detected_isa`` (the CPU's widest),
    ``max_isa`` (the cap from ``CNNKIT_MAX_ISA`` or :func:`set_max_isa`),
    ``num_threads``, the selected ``sgemm`` kernel and ``cuda``.
    """
    info = dict(_C.build_info())
    info["version"] = __version__
    return info


def set_num_threads(n):
    """Set the number of threads every op may use (default: ``OMP_NUM_THREADS`` or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_num_threads():
    """The number of threads ops use."""
    return _C.num_threads()


def set_max_isa(isa):
    """Cap the instruction set kernels may use: ``"scalar"``, ``"avx2"`` or ``"avx512"``.

    Kernels for wider ISAs than the CPU supports never run, whatever the cap.
    """
    _C.set_max_isa(str(isa))


def get_max_isa():
    """The current ISA cap."""
    return _C.max_isa()
