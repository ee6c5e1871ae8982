"""cnnkit's CUDA SGEMM and conv2d against PyTorch (cuBLAS, cuDNN) on one GPU, TF32 off on both sides.

    python benchmarks/cuda_kernels.py OUT_DIR [--rounds 7] [--batch 64] [--sizes 1024 2048 4096 8192]

Writes OUT_DIR/cuda_kernels.json and prints a table: per workload the median milliseconds of each
contender (CUDA events around one call, contenders interleaved round by round, each run untimed
for ~0.1 s before its sample) and the ratio PyTorch time / cnnkit time that issue 13's targets
are stated in (SGEMM >= 0.8x cuBLAS; conv forward + backward, geometric mean over the layers of
shapes/targets.txt at batch 64, >= 0.7x cuDNN). Needs PyTorch with CUDA and a GPU.
"""

import argparse
import json
import math
import os
import statistics
import time

import torch

from cnnkit import _cuda
from cnnkit.bench import conv_flops, load_shapes
from cnnkit.cuda import ops_conv


def _sample_ms(fn):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def interleaved(contenders, rounds):
    """Median milliseconds per call of each callable (name -> fn)."""
    samples = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            until = time.perf_counter() + 0.1
            while time.perf_counter() < until:
                contenders[name]()
            torch.cuda.synchronize()
            samples[name].append(_sample_ms(contenders[name]))
    return {name: statistics.median(v) for name, v in samples.items()}


def _row(workload, flops, times):
    return dict(workload=workload, cnnkit_ms=times["cnnkit"], torch_ms=times["torch"],
                cnnkit_tflops=flops / times["cnnkit"] / 1e9, ratio=times["torch"] / times["cnnkit"])


def bench_sgemm(sizes, rounds):
    rows = []
    for n in sizes:
        a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
        c, c_ref = torch.empty(n, n, device="cuda"), torch.empty(n, n, device="cuda")
        stream = torch.cuda.current_stream().cuda_stream
        times = interleaved({"cnnkit": lambda: _cuda.sgemm(a, b, c, False, False, 1.0, 0.0, "tiled", stream),
                             "torch": lambda: torch.matmul(a, b, out=c_ref)}, rounds)
        rows.append(_row(f"sgemm {n}^3", 2.0 * n**3, times))
    return rows


def bench_conv(batch, rounds, algos):
    rows = []
    for s in load_shapes("targets"):
        s = s._replace(N=batch)
        x = torch.randn(s.N, s.C, s.H, s.W, device="cuda")
        w = torch.randn(s.K, s.C // s.groups, s.kh, s.kw, device="cuda")
        b = torch.randn(s.K, device="cuda")
        args = (s.stride, s.pad, s.dilation, s.groups)
        dy = torch.randn_like(torch.nn.functional.conv2d(x, w, b, *args))
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))

        def torch_step():
            y = torch.nn.functional.conv2d(xr, wr, br, *args)
            torch.autograd.grad(y, (xr, wr, br), dy)

        contenders = {"torch": torch_step}
        for algo in algos:
            def step(algo=algo):
                ops_conv.conv2d(x, w, b, *args, algo=algo)
                ops_conv.conv2d_backward(dy, x, w, *args, algo=algo)
            contenders[f"cnnkit[{algo}]"] = step
        times = interleaved(contenders, rounds)
        for algo in algos:
            row = _row(f"conv fwd+bwd {s.name} [{algo}]", 3 * conv_flops(s), {"cnnkit": times[f"cnnkit[{algo}]"],
                                                                           "torch": times["torch"]})
            rows.append(dict(row, layer=s.name, algo=algo))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--algos", nargs="*", default=["auto", "im2col", "implicit_gemm"])
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    rows = bench_sgemm(args.sizes, args.rounds) + bench_conv(args.batch, args.rounds, args.algos)
    summary = {}
    for algo in args.algos:
        ratios = [r["ratio"] for r in rows if r.get("algo") == algo]
        summary[f"conv geomean ratio [{algo}]"] = math.exp(sum(map(math.log, ratios)) / len(ratios))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "cuda_kernels.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), rows=rows, summary=summary), f, indent=1)
    for r in rows:
        print(f"{r['workload']:40s} cnnkit {r['cnnkit_ms']:9.3f} ms  torch {r['torch_ms']:9.3f} ms  "
              f"ratio {r['ratio']:.2f}  ({r['cnnkit_tflops']:.1f} TFLOP/s)")
    for k, v in summary.items():
        print(f"{k}: {v:.2f}")


if __name__ == "__main__":
    main()
