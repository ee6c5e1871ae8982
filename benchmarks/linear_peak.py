"""Linear layers of classifiers: forward and both backward GEMMs, % of the FMA peak and against PyTorch.

    python benchmarks/linear_peak.py [--threads 2] [--rounds 7] [--out FILE.json]

Per (in -> out, batch): the forward (x @ W^T + b), the input gradient (dy @ W)
and the weight gradient (dy^T @ x), each against torch.nn.functional.linear /
torch.mm on the same arrays, interleaved rounds, medians: cnnkit with sgemm's
rule choosing the small-M or blocked path ("rule") and with the measured
choice (cnnkit.autotune, "measured"). ratio = torch time / cnnkit time; % peak
against cnnkit's measured FMA peak at this thread count.
Small batches read the whole weight once per call and are bound by memory
bandwidth, not by the FMAs: GB/s of weight traffic is shown beside.
"""

import argparse
import json
import os
import tempfile

import numpy as np

import cnnkit
from cnnkit import _C, bench
from cnnkit import functional as F

LAYERS = [(3136, 1024, 64), (4096, 4096, 1), (4096, 4096, 4), (4096, 4096, 16), (4096, 4096, 64),
          (9216, 4096, 64), (512, 10, 64), (1024, 10, 64), (400, 120, 64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out")
    args = parser.parse_args()
    cnnkit.set_num_threads(args.threads)
    os.environ["CNNKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnkit-bench-")  # start measuring afresh
    torch = bench._torch(args.threads)
    peak = bench.measure_peak(args.threads)
    rows = []
    rng = np.random.default_rng(0)
    for fan_in, fan_out, batch in LAYERS:
        x = rng.standard_normal((batch, fan_in)).astype(np.float32)
        w = rng.standard_normal((fan_out, fan_in)).astype(np.float32)
        b = rng.standard_normal(fan_out).astype(np.float32)
        dy = rng.standard_normal((batch, fan_out)).astype(np.float32)
        ours = {"forward": lambda: F.linear(x, w, b),
                "input_grad": lambda: F.linear_backward(dy, x, w, weight_grad=False, bias_grad=False),
                "weight_grad": lambda: F.linear_backward(dy, x, w, input_grad=False, bias_grad=False)}
        theirs = {}
        if torch is not None:
            xt, wt, bt, dyt = (torch.from_numpy(v) for v in (x, w, b, dy))
            theirs = {"forward": lambda: torch.nn.functional.linear(xt, wt, bt),
                      "input_grad": lambda: torch.mm(dyt, wt),
                      "weight_grad": lambda: torch.mm(dyt.t(), xt)}
        flops = 2.0 * batch * fan_in * fan_out
        for what, fn in ours.items():
            def with_autotune(on, fn=fn):
                def call():
                    cnnkit.autotune.set_enabled(on)
                    fn()
                return call

            contenders = {"rule": with_autotune(False), "cnnkit": with_autotune(True)}
            if what in theirs:
                contenders["torch"] = theirs[what]
            times = bench.interleaved(contenders, rounds=args.rounds, min_time=0.03, settle_time=0.1)
            row = {"layer": f"{fan_in}->{fan_out}", "batch": batch, "what": what,
                   "time_s": times, "measured_over_rule": times["rule"] / times["cnnkit"], "gflops": flops / times["cnnkit"] / 1e9,
                   "pct_peak": 100 * flops / times["cnnkit"] / 1e9 / peak,
                   "weight_gbs": 4.0 * fan_in * fan_out / times["cnnkit"] / 1e9}
            if "torch" in times:
                row["torch_over_cnnkit"] = times["torch"] / times["cnnkit"]
                row["torch_pct_peak"] = 100 * flops / times["torch"] / 1e9 / peak
            rows.append(row)
            print(f"{row['layer']:>10s} b{batch:<3d} {what:12s} {row['gflops']:7.1f} GFLOP/s "
                  f"{row['pct_peak']:5.1f}% peak {row['weight_gbs']:6.1f} GB/s, rule/measured {row['measured_over_rule']:.2f}"
                  + (f"  torch {row['torch_pct_peak']:5.1f}% peak, torch/cnnkit {row['torch_over_cnnkit']:.2f}"
                     if "torch" in times else ""), flush=True)
    result = {"choices": cnnkit.autotune.entries(), "processor": _C.autotune_signature(), "threads": args.threads, "isa": cnnkit.get_max_isa(),
              "peak_gflops": peak, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
