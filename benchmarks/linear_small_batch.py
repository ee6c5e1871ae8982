"""linear forward and backward at small batch against PyTorch and NumPy.

Interleaved: each round times cnnkit, torch and numpy on the same arrays; a
ratio is median(peer) / median(cnnkit) over the rounds (> 1: cnnkit faster).
Backward is grad_input + grad_weight + grad_bias; the peers run the same
three products (g @ W, g^T @ X, sum of g).
Usage: PYTHONPATH=python python benchmarks/linear_small_batch.py [--rounds 9] [--threads 1 2]
"""

import argparse
import statistics
import time

import numpy as np
import torch

import cnnkit
from cnnkit import functional as F

# in_features, out_features: the MNIST CNN's FC layer and LeNet-5's two classifier layers.
LAYERS = [(3136, 1024), (400, 120), (84, 10)]
BATCHES = [1, 4, 16]


def per_call(fn, seconds=0.02):
    reps = 1
    while True:
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        elapsed = time.perf_counter() - t
        if elapsed >= seconds:
            return elapsed / reps
        reps *= 2


def measure(fns, rounds):
    times = [[] for _ in fns]
    for _ in range(rounds):
        for t, fn in zip(times, fns):
            t.append(per_call(fn))
    return [statistics.median(t) for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'threads':>7s} {'layer':>10s} {'batch':>5s} {'fwd us':>8s} {'/torch':>7s} {'/numpy':>7s}"
          f" {'bwd us':>8s} {'/torch':>7s} {'/numpy':>7s}")
    for threads in args.threads:
        cnnkit.set_num_threads(threads)
        torch.set_num_threads(threads)
        for fin, fout in LAYERS:
            w = rng.standard_normal((fout, fin)).astype(np.float32)
            b = rng.standard_normal(fout).astype(np.float32)
            tw, tb = torch.from_numpy(w), torch.from_numpy(b)
            for batch in BATCHES:
                x = rng.standard_normal((batch, fin)).astype(np.float32)
                g = rng.standard_normal((batch, fout)).astype(np.float32)
                tx, tg = torch.from_numpy(x), torch.from_numpy(g)

                def th_f():
                    with torch.no_grad():
                        torch.nn.functional.linear(tx, tw, tb)

                def th_b():
                    with torch.no_grad():
                        torch.mm(tg, tw)
                        torch.mm(tg.t(), tx)
                        tg.sum(0)

                def np_b():
                    g @ w
                    g.T @ x
                    g.sum(0)

                fwd = measure([lambda: F.linear(x, w, b), th_f, lambda: x @ w.T + b], args.rounds)
                bwd = measure([lambda: F.linear_backward(g, x, w), th_b, np_b], args.rounds)
                print(f"{threads:7d} {f'{fin}->{fout}':>10s} {batch:5d} {fwd[0] * 1e6:8.1f} {fwd[1] / fwd[0]:7.2f}"
                      f" {fwd[2] / fwd[0]:7.2f} {bwd[0] * 1e6:8.1f} {bwd[1] / bwd[0]:7.2f} {bwd[2] / bwd[0]:7.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
