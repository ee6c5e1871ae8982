"""Measured algorithm choice, as ``torch.backends.cudnn.benchmark``: the first
call of each conv shape with ``algo="auto"`` times every implementation that
can run it and remembers the fastest, in memory and in a cache file shared by
this user's processes.

The choice is per (shape, direction and gradients asked for, ISA cap, thread
count). The cache file lives in ``$CNNKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/cnnkit``, else ``~/.cache/cnnkit``; it is replaced
atomically under a lock, and ignored when it was written by another cnnkit
version or build (a rebuilt module may hold new kernels) or on another CPU. Autotuning is on by default; ``CNNKIT_AUTOTUNE=0``
or :func:`set_enabled` turn it off, and
:func:`cnnkit.use_deterministic_algorithms` suspends it: then a fixed
heuristic picks, and results never depend on a timing.
"""

from . import _C

__all__ = ["enabled", "set_enabled", "cache_file", "clear", "entries"]


def enabled():
    """Whether ``algo="auto"`` measures now: the setting, unless deterministic algorithms are on."""
    return _C.autotune_enabled()


def set_enabled(mode):
    """Turn measuring on or off for this process (the environment's ``CNNKIT_AUTOTUNE`` sets the start)."""
    if not isinstance(mode, bool):
        raise TypeError(f"set_enabled: mode must be a bool, got {type(mode).__name__}")
    _C.set_autotune(mode)


def cache_file():
    """The path of the cache file now (from the environment), or ``None`` when no cache folder is known."""
    return _C.autotune_cache_file() or None


def clear(disk=True):
    """Forget every measured choice in this process and, with ``disk``, delete the cache file."""
    if not isinstance(disk, bool):
        raise TypeError(f"clear: disk must be a bool, got {type(disk).__name__}")
    _C.autotune_clear(disk)


def entries():
    """The choices this process knows: ``{call description: implementation}``."""
    return dict(_C.autotune_entries())

