"""One process-wide random generator for everything random in cnnkit.

Weight initialisation, dropout, shuffling and augmentation draw from
:func:`default_generator` whenever they are given no generator or seed of
their own, so ``cnnkit.manual_seed(0)`` makes a whole training run repeat.
"""

import operator

import numpy as np

__all__ = ["manual_seed", "default_generator", "generator_from"]

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the process-wide generator and return it.

    The generator object stays the same one, so code that kept the result of
    :func:`default_generator` earlier sees the new seed too.
    """
    _generator.bit_generator.state = type(_generator.bit_generator)(_seed(seed, "seed")).state
    return _generator


def default_generator():
    """The process-wide ``np.random.Generator``."""
    return _generator


def generator_from(rng=None, seed=None):
    """The generator an operation should draw from.

    An explicit ``np.random.Generator`` wins, then a seed (a fresh generator
    seeded with it), then the process-wide generator.
    """
    if rng is not None and seed is not None:
        raise ValueError("pass either rng or seed, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    if seed is not None:
        return np.random.default_rng(_seed(seed, "seed"))
    return _generator


def _seed(seed, name):
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}") from None
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}")
    return seed
