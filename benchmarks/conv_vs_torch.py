"""conv2d forward and forward+backward against PyTorch on real network layers.

Interleaved: each round times cnnkit then torch on the same arrays; the ratio
reported is median(torch) / median(cnnkit) over the rounds (> 1: cnnkit faster).
Usage: PYTHONPATH=python python benchmarks/conv_vs_torch.py [--rounds 7] [--threads 2] [--only NAME]
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch

import cnnkit
from cnnkit import _C
from cnnkit import functional as F

# name, x shape, w shape, stride, padding
SHAPES = [
    ("lenet_c1", (64, 1, 32, 32), (6, 1, 5, 5), 1, 0),
    ("lenet_c2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("c32_k64_5x5", (64, 32, 14, 14), (64, 32, 5, 5), 1, 2),
    ("resnet_3x3", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("resnet_s2", (8, 128, 28, 28), (256, 128, 3, 3), 2, 1),
    ("pointwise", (8, 256, 14, 14), (256, 256, 1, 1), 1, 0),
    ("alexnet_c1", (8, 3, 227, 227), (96, 3, 11, 11), 4, 0),
    ("vgg_3x3", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1),
]


def best_of(fn, reps):
    # Untimed calls for 10 ms first: PyTorch's OpenMP workers keep spinning for
    # milliseconds after its last call and take the second core from whatever
    # is timed next (cnnkit's 2-thread LeNet c2 forward measured 270 GF/s after
    # a cnnkit call, 160 right after torch); this gives each library its own.
    warm_until = time.perf_counter() + 0.01
    while time.perf_counter() < warm_until:
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None)
    ap.add_argument("--no-backward", action="store_true")
    args = ap.parse_args()
    cnnkit.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    fwd_ratios, bwd_ratios = [], []
    print(f"{'layer':14s} {'impl':>8s} {'fwd GF/s':>9s} {'torch':>7s} {'ratio':>6s}   {'f+b ratio':>9s}")
    for name, xs, ws, stride, pad in SHAPES:
        if args.only and args.only not in name:
            continue
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        y = F.conv2d(x, w, b, stride=stride, padding=pad)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        tdy = torch.from_numpy(dy)
        flops = 2.0 * y.size * ws[1] * ws[2] * ws[3]
        reps = max(1, int(0.05 * 100e9 / flops))

        def ck_f():
            F.conv2d(x, w, b, stride=stride, padding=pad)

        def th_f():
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad)

        def ck_fb():
            F.conv2d(x, w, b, stride=stride, padding=pad)
            F.conv2d_backward(dy, x, w, stride=stride, padding=pad, bias_grad=False)

        txg = tx.clone().requires_grad_(True)
        twg = tw.clone().requires_grad_(True)

        def th_fb():
            out = torch.nn.functional.conv2d(txg, twg, tb, stride=stride, padding=pad)
            gx, gw = torch.autograd.grad(out, (txg, twg), tdy)

        ck_f(), th_f()
        tf_c, tf_t, tb_c, tb_t = [], [], [], []
        for _ in range(args.rounds):
            tf_c.append(best_of(ck_f, reps))
            tf_t.append(best_of(th_f, reps))
            if not args.no_backward:
                tb_c.append(best_of(ck_fb, reps))
                tb_t.append(best_of(th_fb, reps))
        mc, mt = statistics.median(tf_c), statistics.median(tf_t)
        r = mt / mc
        fwd_ratios.append(r)
        impl = _C.conv2d_implementation(xs, ws, (stride, stride), (pad,) * 4, (1, 1), 1, "auto")
        line = f"{name:14s} {impl:>8s} {flops / mc / 1e9:9.1f} {flops / mt / 1e9:7.1f} {r:6.2f}"
        if not args.no_backward:
            rb = statistics.median(tb_t) / statistics.median(tb_c)
            bwd_ratios.append(rb)
            line += f"   {rb:9.2f}"
        print(line, flush=True)
    geo = lambda rs: math.exp(sum(map(math.log, rs)) / len(rs))
    print(f"geomean forward ratio {geo(fwd_ratios):.2f}" + (f", forward+backward {geo(bwd_ratios):.2f}" if bwd_ratios else ""))


if __name__ == "__main__":
    main()
