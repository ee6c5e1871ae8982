"""Each distinct convolution of a zoo model at batch 64, its forward, input gradient and weight
gradient timed apart against PyTorch's (aten.convolution_backward with one output mask), in one
process with interleaved rounds: which part of which layer a training step loses time in.

    python benchmarks/conv_parts.py vgg11 resnet20 [--threads 1] [--rounds 3] [--json FILE]
"""

import argparse
import json
import platform

import numpy as np

import cnnkit
from cnnkit import bench, nn
from cnnkit import functional as F


def conv_layers(name, batch):
    """(layer name, input shape, stride, padding) of each distinct Conv2d of the model."""
    model = bench._zoo_model(name).eval()
    x = np.zeros((batch, *bench._MODEL_INPUTS[name]), np.float32)
    seen, out = set(), []
    for lname, m, in_shape, _ in bench._leaf_layers(model, x):
        if isinstance(m, nn.Conv2d):
            key = (in_shape, m.weight.shape, m.stride, m.padding)
            if key not in seen:
                seen.add(key)
                out.append((f"{name}.{lname}", in_shape, m.weight.shape, m.stride[0], m.padding[0]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=bench.ZOO_MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (use with --threads 1), as `cnnkit bench --clock cpu`")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    bench._sample_clock[0] = bench._CLOCKS[args.clock]
    import torch

    aten = torch.ops.aten
    cnnkit.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    peak = bench.measure_peak(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for model in args.models:
        for lname, in_shape, w_shape, s, p in conv_layers(model, args.batch):
            x = rng.standard_normal(in_shape).astype(np.float32)
            w = rng.standard_normal(w_shape).astype(np.float32)
            y = F.conv2d(x, w, None, s, p)
            g = rng.standard_normal(y.shape).astype(np.float32)
            tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
            flops = 2.0 * y.size * w[0].size

            def torch_bwd(mask):
                return lambda: aten.convolution_backward(tg, tx, tw, None, [s, s], [p, p], [1, 1], False, [0, 0],
                                                         1, mask)

            parts = {
                "fwd": (lambda: F.conv2d(x, w, None, s, p), lambda: torch.nn.functional.conv2d(tx, tw, None, s, p)),
                "dx": (lambda: F.conv2d_backward(g, x, w, s, p, weight_grad=False, bias_grad=False),
                       torch_bwd([True, False, False])),
                "dw": (lambda: F.conv2d_backward(g, x, w, s, p, input_grad=False, bias_grad=False),
                       torch_bwd([False, True, False])),
            }
            for part, (ours, theirs) in parts.items():
                t = bench.interleaved({"cnnkit": ours, "torch": theirs}, rounds=args.rounds)
                pct = {k: 100.0 * flops / v / 1e9 / peak for k, v in t.items()}
                rows.append({"layer": lname, "input": list(in_shape), "weight": list(w_shape), "stride": s,
                             "padding": p, "part": part, "seconds": t, "pct_peak": pct,
                             "ratio": t["torch"] / t["cnnkit"]})
                print(f"{lname:<24} {str(tuple(w_shape)):<18} s{s} {part:<3}  cnnkit {t['cnnkit'] * 1e3:8.2f} ms "
                      f"({pct['cnnkit']:3.0f}%)  torch {t['torch'] * 1e3:8.2f} ms ({pct['torch']:3.0f}%)  "
                      f"ratio {t['torch'] / t['cnnkit']:.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.machine(), "threads": args.threads, "clock": args.clock,
                       "peak_gflops": peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
