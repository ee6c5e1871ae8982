"""The program test_distributed.py runs under ``mpiexec -n 2``, and the one-rank references it
computes in its own process from the same functions.

``python mpi_worker.py equivalence OUT``: every rank trains each case of CASES with
DistributedDataParallel on its half of each global batch and saves its final weights and
buffers to ``OUT/rank<r>.npz``, then runs SyncBatchNorm on unequal shards (3 and 5 samples)
of one batch and saves its outputs and gradients to ``OUT/syncbn<r>.npz``.
``python mpi_worker.py crash``: rank 1 fails in its second training step while rank 0 goes
on into the gradient allreduce.
"""

import os
import sys

import numpy as np

import cnnkit
from cnnkit import distributed, models, nn, optim

RANKS, B = 2, 4  # per-rank batch B: the global batch is RANKS * B


def steps(case):
    """Training steps per case. In the integer case every value is a multiple of a power of two
    that float32 holds exactly for 2 steps: the weight's fraction bits grow from 3 by 10 a step
    (2/256 of MSE's mean over 8x32 outputs, and lr 2**-3), the magnitudes stay below 2. With no
    rounding, any summation order gives the same bits."""
    return 2 if case == "sgd-int" else 3
CASES = ("sgd-int", "sgd", "adam", "sgd-syncbn", "adam-syncbn", "sgd-bn-unsynced")
SYNCBN_SPLIT = 3  # rank 0's samples of the SyncBatchNorm batch of 8


def build(case, seed):
    """The model of ``case``, initialised from ``seed`` (ranks use their own: the wrapper must
    broadcast rank 0's)."""
    cnnkit.manual_seed(seed)
    if case == "lenet5":
        return models.lenet5()
    if case == "sgd-int":
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
        rng = np.random.default_rng(seed)
        for p in model.parameters():
            p.data[...] = rng.integers(-2, 3, p.shape) / 8
        return model
    if "bn" in case:
        return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


def data(case):
    """``(x, y)`` for all steps; global batch ``k`` is rows ``[k * RANKS * B, (k + 1) * RANKS * B)``."""
    rng = np.random.default_rng(7)
    n = RANKS * B * steps(case)
    if case == "sgd-int":
        return (rng.integers(-1, 2, (n, 1, 6, 6)).astype(np.float32),
                rng.integers(-1, 2, (n, 2 * 4 * 4)).astype(np.float32))
    return rng.standard_normal((n, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def train(model, case, ranks, rank):
    """Run ``steps(case)`` steps on this rank's part of each global batch; returns the parameters after
    each step (the first entry: before any)."""
    x, y = data(case)
    params = list(model.parameters())
    if case.startswith("adam"):
        opt = optim.Adam(params, lr=0.01)
    else:
        # Powers of two keep the integer case's arithmetic exact.
        opt = optim.SGD(params, lr=2.0**-3) if case == "sgd-int" else optim.SGD(params, lr=0.1, momentum=0.9)
    crit = nn.MSELoss() if case == "sgd-int" else nn.CrossEntropyLoss()
    part = RANKS * B // ranks
    trajectory = [[p.data.copy() for p in params]]
    for k in range(steps(case)):
        lo = k * RANKS * B + rank * part
        out = model(x[lo : lo + part])
        crit(out, y[lo : lo + part])
        opt.zero_grad()
        model.backward(crit.backward(), input_grad=False)
        opt.step()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def syncbn_batch():
    """A batch of 8 with large channel means, its output gradient, weight and bias."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((8, 4, 5, 5)) * 3 + 1e4 * np.arange(1, 5).reshape(1, 4, 1, 1)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    return x, g, rng.random(4).astype(np.float32) + 0.5, rng.standard_normal(4).astype(np.float32)


def _equivalence(out_dir):
    r = distributed.rank()
    saved = {}
    for case in CASES:
        model = build(case, seed=r)
        if "syncbn" in case:
            model = distributed.SyncBatchNorm.convert_sync_batchnorm(model)
        # Buckets of about 1 KB: several per model, so the in-order start across buckets is exercised.
        ddp = distributed.DistributedDataParallel(model, bucket_cap_mb=2.0**-10)
        train(ddp, case, RANKS, r)
        for name, value in model.state_dict().items():
            saved[f"{case}/{name}"] = value
    saved["overlap/started"] = _buckets_started_per_gradient()
    np.savez(os.path.join(out_dir, f"rank{r}.npz"), **saved)

    x, g, w, b = syncbn_batch()
    part = slice(0, SYNCBN_SPLIT) if r == 0 else slice(SYNCBN_SPLIT, None)
    bn = distributed.SyncBatchNorm(4)
    bn.weight.data[...], bn.bias.data[...] = w, b
    y = bn(x[part])
    dx = bn.backward(g[part])
    np.savez(os.path.join(out_dir, f"syncbn{r}.npz"), y=y, dx=dx, dw=bn.weight.grad, db=bn.bias.grad,
             running_mean=bn.running_mean, running_var=bn.running_var)


def _buckets_started_per_gradient():
    """How many of LeNet-5's buckets had started their allreduce as each gradient of one backward
    arrived."""
    ddp = distributed.DistributedDataParallel(build("lenet5", seed=0), bucket_cap_mb=2.0**-10)
    started = []
    for p in ddp.parameters():
        p.register_post_accumulate_grad_hook(lambda p: started.append(ddp._next_bucket))
    crit = nn.CrossEntropyLoss()
    crit(ddp(np.ones((B, 1, 28, 28), np.float32)), np.arange(B))
    ddp.backward(crit.backward(), input_grad=False)
    return np.array(started + [len(ddp._buckets)])


def _crash():
    model = distributed.DistributedDataParallel(build("sgd", seed=0))
    x, y = data("sgd")
    if distributed.rank() == 1:
        y = y.copy()
        y[B:] = 99  # an out-of-range label in rank 1's second batch
    crit, opt = nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1)
    for k in range(steps("sgd")):
        out = model(x[k * B : (k + 1) * B])
        crit(out, y[k * B : (k + 1) * B])
        opt.zero_grad()
        model.backward(crit.backward(), input_grad=False)
        opt.step()


if __name__ == "__main__":
    distributed.init()
    assert distributed.world_size() == RANKS, distributed.world_size()
    if sys.argv[1] == "equivalence":
        _equivalence(sys.argv[2])
    else:
        _crash()
