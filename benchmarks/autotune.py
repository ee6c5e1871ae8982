"""What the measured conv choice (cnnkit.autotune) costs and gains on this machine.

    python benchmarks/autotune.py [--threads 2] [--rounds 5] [--batch 64] [--out FILE.json]

1. First-call cost: a ResNet-20 training step (forward, cross-entropy, backward)
   at the batch size, in fresh processes with an empty cache (autotune on)
   and with autotuning off: steps 1, 2 and 3.
2. Per layer: every conv of shapes/targets.txt and of the zoo's models (lenet5,
   mnist_cnn, resnet20, vgg11, alexnet at the batch size), forward + backward
   (all three gradients), the heuristic's implementations against the measured
   winners against PyTorch, interleaved rounds, medians. Ratios are time /
   cnnkit time, so above 1 means cnnkit (or the measured choice) is faster.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import cnnkit
from cnnkit import _C, bench, models
from cnnkit import functional as F

_ZOO = {"lenet5": (models.lenet5, (1, 28, 28)), "mnist_cnn": (models.mnist_cnn, (1, 28, 28)),
        "resnet20": (models.resnet, (3, 32, 32)), "vgg11": (models.vgg, (3, 32, 32)),
        "alexnet": (models.alexnet, (3, 32, 32))}

_FIRST_STEP = """
import sys, time, json
import numpy as np
import cnnkit
from cnnkit import models, nn
cnnkit.set_num_threads(int(sys.argv[1]))
batch = int(sys.argv[2])
model = models.resnet()
loss = nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, batch)
times = []
for _ in range(3):
    t0 = time.perf_counter()
    loss(model(x), y)
    model.backward(loss.backward())
    times.append(time.perf_counter() - t0)
print(json.dumps({"steps": times, "choices": len(cnnkit.autotune.entries())}))
"""


def first_call_cost(threads, batch, repeats=2):
    rows = []
    for mode in ("1", "0") * repeats:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, CNNKIT_AUTOTUNE=mode, CNNKIT_CACHE_DIR=cache)
            out = subprocess.run([sys.executable, "-c", _FIRST_STEP, str(threads), str(batch)], env=env,
                                 capture_output=True, text=True, check=True).stdout
        rows.append(dict(json.loads(out), autotune=mode == "1"))
    return rows


def zoo_shapes(batch):
    """Every distinct conv call of the zoo's models at this batch size, as bench.ConvShape."""
    seen, shapes = set(), []
    real = F.conv2d

    def record(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, **kw):
        key = (x.shape, w.shape, stride, padding, dilation, groups)
        if key not in seen:
            seen.add(key)
            shapes.append((name, key))
        return real(x, w, b, stride, padding, dilation, groups, **kw)

    F.conv2d = record
    try:
        for name, (make, shape) in _ZOO.items():
            model = make()
            model.eval()
            model(np.zeros((batch, *shape), np.float32))
    finally:
        F.conv2d = real
    out = []
    for i, (model, (x, w, stride, padding, dilation, groups)) in enumerate(shapes):
        pair = lambda v: v if isinstance(v, int) else v[0]
        out.append(bench.ConvShape(f"{model}_{i}", *x, w[0], w[2], w[3], pair(stride), pair(padding),
                                   pair(dilation), groups))
    return out


def per_layer(shapes, threads, rounds, torch):
    rows = []
    rng = np.random.default_rng(0)
    for s in shapes:
        x, w, b = bench._conv_inputs(s, rng)
        conv = ((s.stride,) * 2, (s.pad,) * 4, (s.dilation,) * 2, s.groups)
        y = _C.conv2d(x, w, b, *conv, "auto")
        dy = rng.standard_normal(y.shape).astype(np.float32)
        picks = {}
        for label, on in (("heuristic", False), ("autotune", True)):
            cnnkit.autotune.set_enabled(on)
            cnnkit.autotune.clear(disk=False)
            t0 = time.perf_counter()
            _C.conv2d(x, w, b, *conv, "auto")
            _C.conv2d_backward(dy, x, w, *conv, True, True, True, "auto")
            first = time.perf_counter() - t0
            picks[label] = (_C.conv2d_implementation(x.shape, w.shape, *conv, "auto", False),
                            _C.conv2d_implementation(x.shape, w.shape, *conv, "auto", True), first)
        cnnkit.autotune.set_enabled(False)

        def pinned(fwd, bwd):
            return lambda: (_C.conv2d(x, w, b, *conv, fwd), _C.conv2d_backward(dy, x, w, *conv, True, True, True, bwd))

        contenders = {label: pinned(f, bw) for label, (f, bw, _) in picks.items()}
        if torch is not None:
            xg, wg, bg = (torch.from_numpy(v).requires_grad_(True) for v in (x, w, b))
            dyt = torch.from_numpy(dy)

            def torch_step():
                out = torch.nn.functional.conv2d(xg, wg, bg, s.stride, s.pad, s.dilation, s.groups)
                torch.autograd.grad(out, (xg, wg, bg), dyt)

            contenders["torch"] = torch_step
        times = bench.interleaved(contenders, rounds=rounds, min_time=0.03, settle_time=0.1)
        row = {"layer": s.name, "shape": list(s[1:]), "gflop": 3 * bench.conv_flops(s) / 1e9,
               "heuristic": picks["heuristic"][:2], "autotune": picks["autotune"][:2],
               "first_call_s": {k: v[2] for k, v in picks.items()},
               "time_s": times, "autotune_gain": times["heuristic"] / times["autotune"]}
        if torch is not None:
            row["torch_over_heuristic"] = times["torch"] / times["heuristic"]
            row["torch_over_autotune"] = times["torch"] / times["autotune"]
        rows.append(row)
        print(f"{s.name:14s} {'/'.join(row['heuristic']):34s} {'/'.join(row['autotune']):34s} "
              f"gain {row['autotune_gain']:.2f}"
              + (f"  torch/heur {row['torch_over_heuristic']:.2f} torch/auto {row['torch_over_autotune']:.2f}"
                 if torch is not None else ""), flush=True)
    return rows


def geomean(values):
    return float(np.exp(np.mean(np.log(values)))) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out")
    parser.add_argument("--skip-first-call", action="store_true")
    args = parser.parse_args()
    cnnkit.set_num_threads(args.threads)
    torch = bench._torch(args.threads)
    result = {"machine": platform.node(), "processor": _C.autotune_signature(), "threads": args.threads,
              "isa": cnnkit.get_max_isa(), "batch": args.batch}
    if not args.skip_first_call:
        result["resnet20_first_steps"] = first_call_cost(args.threads, args.batch)
        for r in result["resnet20_first_steps"]:
            print(f"resnet20 b{args.batch} autotune={'on ' if r['autotune'] else 'off'} steps "
                  + " ".join(f"{t * 1e3:.0f} ms" for t in r["steps"]) + f", {r['choices']} choices", flush=True)
    shapes = bench.load_shapes("targets") + zoo_shapes(args.batch)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["CNNKIT_CACHE_DIR"] = cache
        result["layers"] = per_layer(shapes, args.threads, args.rounds, torch)
    layers = result["layers"]
    result["geomean_autotune_gain"] = geomean([r["autotune_gain"] for r in layers])
    if torch is not None:
        result["geomean_torch_over_heuristic"] = geomean([r["torch_over_heuristic"] for r in layers])
        result["geomean_torch_over_autotune"] = geomean([r["torch_over_autotune"] for r in layers])
    print({k: v for k, v in result.items() if k.startswith("geomean")})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
