"""Process-level hostile cases from docs/RELIABILITY.md: repeated calls must not grow memory, and
concurrent callers get the serial results."""

import os
import threading

import numpy as np
import pytest

import cnnkit.functional as F


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _one_of_each(x, w, labels):
    y = F.conv2d(x, w, padding=1)
    F.conv2d_backward(y, x, w, padding=1)
    p, idx = F.max_pool2d(y, 2, return_indices=True)
    F.max_pool2d_backward(p, y, idx, 2)
    F.avg_pool2d_backward(F.avg_pool2d(y, 2), y, 2)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    F.batch_norm_backward(F.batch_norm(y, rm, rv, training=True), y, rm, rv)
    F.tanh_backward(F.tanh(y), y)
    logits = F.linear(y.reshape(2, -1), np.ones((3, 4 * 7 * 7), np.float32))
    F.cross_entropy_backward(logits, labels)
    return F.cross_entropy(logits, labels)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read the RSS")
def test_ten_thousand_calls_do_not_grow_memory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    labels = np.array([0, 2])
    for _ in range(200):  # warm up the per-thread workspaces and NumPy's caches
        _one_of_each(x, w, labels)
    before = _rss_bytes()
    for _ in range(10_000 // 10):
        _one_of_each(x, w, labels)
    for _ in range(9_000):
        F.relu(F.conv2d(x, w))
    assert _rss_bytes() - before < 8 * 2**20


def test_concurrent_callers_get_the_serial_results():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, 4, 12, 12)).astype(np.float32) for _ in range(6)]
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    labels = np.array([0, 1, 2])

    def work(x):
        y = F.conv2d(x, w, padding=1)
        return y, F.cross_entropy(y.reshape(3, -1)[:, :5], labels), F.batch_norm(y, None, None, training=True)

    serial = [work(x) for x in xs]
    results = [None] * len(xs)

    def run(i):
        for _ in range(20):
            results[i] = work(xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
