"""Memory-bound and elementwise ops, cnnkit against PyTorch, interleaved.

    PYTHONPATH=python python benchmarks/memops.py [--rounds 9] [--threads 2] [case ...]

Each round times cnnkit then PyTorch on the same arrays (best of a few calls each), so a noisy
neighbour slows both alike; the table shows the medians over the rounds and the ratio
torch / cnnkit (above 1: cnnkit is faster). Forward and backward are timed together.
`--isa scalar` caps cnnkit's ISA, which shows the baseline (pre-SIMD) kernels.

PyTorch runs with its own settings (set OMP_WAIT_POLICY yourself to change its runtime's);
cnnkit's pool workers spin at most 100 us after a job and then sleep.
"""

import argparse
import statistics
import time


import numpy as np

import cnnkit
import cnnkit.functional as F


def _cases(torch):
    tf = torch.nn.functional
    aten = torch.ops.aten
    rng = np.random.default_rng(0)
    cases = {}

    def act(name, t_fwd, t_bwd):
        x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32) * 3
        g = rng.standard_normal(x.shape).astype(np.float32)
        tx, tg = torch.from_numpy(x), torch.from_numpy(g)

        def ours():
            getattr(F, name)(x)
            getattr(F, name + "_backward")(g, x)

        def theirs():
            y = t_fwd(tx)
            t_bwd(tg, tx, y)

        cases[name + " 64x6x28x28"] = (ours, theirs)

    act("tanh", torch.tanh, lambda g, x, y: aten.tanh_backward(g, y))
    act("sigmoid", torch.sigmoid, lambda g, x, y: aten.sigmoid_backward(g, y))
    act("elu", tf.elu, lambda g, x, y: aten.elu_backward(g, 1.0, 1.0, 1.0, False, x))

    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)
    g = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)

    def avg_ours():
        F.avg_pool2d(x, 2, 2)
        F.avg_pool2d_backward(g, x, 2, 2)

    def avg_theirs():
        tf.avg_pool2d(tx, 2, 2)
        aten.avg_pool2d_backward(tg, tx, [2, 2], [2, 2], [0, 0], False, True, None)

    cases["avg_pool 2x2/2 64x6x28x28"] = (avg_ours, avg_theirs)

    xm = rng.standard_normal((32, 64, 56, 56)).astype(np.float32)
    txm = torch.from_numpy(xm)
    cases["max_pool 3x3/2 32x64x56x56"] = (lambda: F.max_pool2d(xm, 3, 2), lambda: tf.max_pool2d(txm, 3, 2))

    xb = rng.standard_normal((32, 64, 56, 56)).astype(np.float32) + 3
    gb = rng.standard_normal(xb.shape).astype(np.float32)
    w = rng.random(64).astype(np.float32) + 0.5
    b = rng.standard_normal(64).astype(np.float32)
    rm, rv = np.zeros(64, np.float32), np.ones(64, np.float32)
    txb, tgb = torch.from_numpy(xb), torch.from_numpy(gb)
    tw, tb, trm, trv = (torch.from_numpy(a.copy()) for a in (w, b, rm, rv))

    def bn_ours():
        F.batch_norm(xb, rm, rv, w, b, training=True)
        F.batch_norm_backward(gb, xb, None, None, w, training=True)

    def bn_theirs():
        _, mean, invstd = aten.native_batch_norm(txb, tw, tb, trm, trv, True, 0.1, 1e-5)
        aten.native_batch_norm_backward(tgb, txb, tw, trm, trv, mean, invstd, True, 1e-5, [True, True, True])

    cases["batch_norm train 32x64x56x56"] = (bn_ours, bn_theirs)

    logits = rng.standard_normal((256, 1000)).astype(np.float32) * 4
    gl = rng.standard_normal(logits.shape).astype(np.float32)
    target = rng.integers(0, 1000, 256)
    tl, tgl, tt = torch.from_numpy(logits), torch.from_numpy(gl), torch.from_numpy(target)

    def sm_ours():
        y = F.softmax(logits)
        F.softmax_backward(gl, y)

    def sm_theirs():
        y = torch.softmax(tl, -1)
        aten._softmax_backward_data(tgl, y, -1, torch.float32)

    cases["softmax 256x1000"] = (sm_ours, sm_theirs)

    def ce_ours():
        F.cross_entropy(logits, target)
        F.cross_entropy_backward(logits, target)

    def ce_theirs():
        lp = aten._log_softmax(tl, 1, False)
        aten.nll_loss_forward(lp, tt, None, 1, -100)
        gnll = aten.nll_loss_backward(torch.tensor(1.0), lp, tt, None, 1, -100, torch.tensor(256.0))
        aten._log_softmax_backward_data(gnll, lp, 1, torch.float32)

    cases["cross_entropy 256x1000"] = (ce_ours, ce_theirs)
    return cases


def _best(fn, calls):
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", choices=["scalar", "avx2", "avx512"], help="cap cnnkit's ISA")
    parser.add_argument("case", nargs="*", help="substrings of case names to run (default: all)")
    args = parser.parse_args()
    cnnkit.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.isa:
        cnnkit.set_max_isa(args.isa)
    cases = _cases(torch)
    print(f"{'case':32s} {'cnnkit ms':>10s} {'torch ms':>10s} {'torch/cnnkit':>13s}")
    for name, (ours, theirs) in cases.items():
        if args.case and not any(c in name for c in args.case):
            continue
        ours(), theirs()
        a, b = [], []
        for _ in range(args.rounds):
            a.append(_best(ours, args.calls))
            b.append(_best(theirs, args.calls))
        ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(f"{name:32s} {ma:10.3f} {mb:10.3f} {mb / ma:13.2f}")


if __name__ == "__main__":
    main()
