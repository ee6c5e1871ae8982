"""The blocks behind cnnkit's large output arrays, kept for reuse after NumPy frees them
(csrc/python/array_cache.h) and freed by cnnkit.empty_cache()."""

import pickle
import threading

import numpy as np

import cnnkit
import cnnkit.functional as F
from cnnkit import _C

BIG = (16, 16, 32, 32)  # 1 MiB: from the cache
SMALL = (2, 3, 4, 5)  # from NumPy


def _input(shape=BIG, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_a_freed_output_serves_the_next_one_of_its_size():
    x = _input()
    cnnkit.empty_cache()
    y = F.relu(x)
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned and y.ctypes.data % 64 == 0
    assert _C.array_cache_bytes() == 0
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    address = y.ctypes.data
    del y
    assert _C.array_cache_bytes() >= x.nbytes
    z = F.tanh(x)
    assert z.ctypes.data == address and _C.array_cache_bytes() == 0
    np.testing.assert_array_equal(z, F.tanh(x.copy()))
    z[...] = 7.0  # an ordinary, writeable array
    assert (z == 7.0).all()


def test_a_view_keeps_its_block():
    x = _input()
    cnnkit.empty_cache()
    y = F.relu(x)
    view = y[3]
    expected = view.copy()
    del y
    assert _C.array_cache_bytes() == 0
    others = [F.sigmoid(x) for _ in range(3)]
    np.testing.assert_array_equal(view, expected)
    assert all(o.ctypes.data != view.base.ctypes.data for o in others)
    del view
    assert _C.array_cache_bytes() >= x.nbytes


def test_outputs_pickle_and_outlive_the_cache():
    x = _input()
    y = F.relu(x)
    cnnkit.empty_cache()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(y)), np.maximum(x, 0))
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_empty_cache_frees_what_it_holds():
    x = _input()
    outputs = [F.relu(x) for _ in range(3)]
    del outputs
    held = _C.array_cache_bytes()
    assert held >= 3 * x.nbytes
    assert cnnkit.empty_cache() == held
    assert _C.array_cache_bytes() == 0 and cnnkit.empty_cache() == 0


def test_small_outputs_come_from_numpy():
    cnnkit.empty_cache()
    y = F.relu(_input(SMALL))
    del y
    assert _C.array_cache_bytes() == 0


def test_outputs_freed_on_other_threads_return_safely():
    x = _input()
    cnnkit.empty_cache()
    outputs = [F.relu(x) for _ in range(8)]

    def drop(i):
        outputs[i] = None

    threads = [threading.Thread(target=drop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _C.array_cache_bytes() >= 8 * x.nbytes
    again = [F.relu(x) for _ in range(8)]
    assert len({a.ctypes.data for a in again}) == 8
    for a in again:
        np.testing.assert_array_equal(a, np.maximum(x, 0))
