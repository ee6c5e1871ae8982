"""Inference of the zoo's models: cnnkit's native plan against ONNX Runtime and the layer-by-layer path.

    PYTHONPATH=python python benchmarks/plan_inference.py [--threads 2] [--rounds 7] [--batches 1 64]
        [--models lenet5 mnist_cnn resnet20 vgg11 alexnet] [--out benchmarks/results/plan-inference.json]

Each model gets random batch-norm statistics (so folding is exercised), its weight-identical
torch twin (cnnkit.bench's converter) is exported with torch.onnx.export(dynamo=False) and run
by onnxruntime with the same thread count. The contenders are timed side by side in one process
by cnnkit.bench.interleaved (interleaved rounds, medians, each settled for 0.1 s before its
sample). Ratios are peer time / plan time; % of peak counts the conv and linear FLOPs against
cnnkit.bench.measure_peak. ``run_model`` is the piece a harness (``cnnkit bench models``) can call.
"""

import argparse
import io
import json
import os
import platform
import tempfile

import numpy as np

import cnnkit
from cnnkit import _twins, bench, models, nn

MODELS = {
    "lenet5": (models.lenet5, (1, 28, 28)),
    "mnist_cnn": (models.mnist_cnn, (1, 28, 28)),
    "resnet20": (lambda: models.resnet(20), (3, 32, 32)),
    "vgg11": (lambda: models.vgg("vgg11"), (3, 32, 32)),
    "alexnet": (models.alexnet, (3, 32, 32)),
}


def randomize_batch_norm(model, rng):
    """Running statistics and affine parameters away from their identity defaults."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean[:] = rng.normal(0, 0.5, c)
            m.running_var[:] = rng.uniform(0.5, 2.0, c)
            m.weight.data[:] = rng.uniform(0.5, 1.5, c)
            m.bias.data[:] = rng.normal(0, 0.5, c)


def model_flops(model, input_shape):
    """Conv and linear FLOPs of one image (Module.flops, through summary)."""
    rows = model.summary(input_shape, file=io.StringIO())
    return sum(r[4] for r in rows)


def ort_session(torch, twin, input_shape, threads, path):
    import onnxruntime as ort

    x = torch.zeros((1, *input_shape))
    torch.onnx.export(twin, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run_model(name, batches, threads, rounds, torch, peak, layer_by_layer=True, seed=0):
    """Rows {model, batch, seconds per contender, ratios, % of peak} for one zoo model."""
    build, input_shape = MODELS[name]
    rng = np.random.default_rng(seed)
    model = build()
    randomize_batch_norm(model, rng)
    model.eval()
    flops = model_flops(model, input_shape)
    twin = _twins.torch_twin(torch, model).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(torch, twin, input_shape, threads, os.path.join(tmp, f"{name}.onnx"))
        plan = model.compile_inference(input_shape)
        for batch in batches:
            x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
            out = np.empty((batch,) + plan.output_shape, np.float32)
            ref = session.run(None, {"x": x})[0]
            got = plan(x, out=out)
            scale = float(np.abs(ref).max())
            contenders = {"plan": lambda: plan(x, out=out), "onnxruntime": lambda: session.run(None, {"x": x})}
            if layer_by_layer:
                contenders["layers"] = lambda: model(x)
            t = bench.interleaved(contenders, rounds=rounds)
            row = {"model": name, "batch": batch, "seconds": t,
                   "ort_over_plan": t["onnxruntime"] / t["plan"],
                   "plan_gflops": flops * batch / t["plan"] / 1e9,
                   "ort_gflops": flops * batch / t["onnxruntime"] / 1e9,
                   "max_abs_diff_vs_ort_over_max": float(np.abs(got - ref).max()) / max(scale, 1e-30)}
            if layer_by_layer:
                row["layers_over_plan"] = t["layers"] / t["plan"]
            if peak:
                row["plan_pct_peak"] = 100 * row["plan_gflops"] / peak
                row["ort_pct_peak"] = 100 * row["ort_gflops"] / peak
            rows.append(row)
            print(f"{name:10s} b{batch:<3d} plan {t['plan'] * 1e6:9.1f} us  ORT {t['onnxruntime'] * 1e6:9.1f} us  "
                  f"ORT/plan {row['ort_over_plan']:.2f}x"
                  + (f"  layers/plan {row['layers_over_plan']:.2f}x" if layer_by_layer else "")
                  + (f"  plan {row['plan_pct_peak']:.0f}% of peak (ORT {row['ort_pct_peak']:.0f}%)" if peak else ""),
                  flush=True)
        plan.release()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-layers", action="store_true", help="skip the layer-by-layer contender")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cnnkit.set_num_threads(args.threads)
    peak = bench.measure_peak(args.threads)
    print(f"peak {peak:.0f} GFLOP/s on {args.threads} threads; {cnnkit.build_info()['max_isa']}")
    rows = []
    for name in args.models:
        rows += run_model(name, args.batches, args.threads, args.rounds, torch, peak, not args.no_layers)
    for batch in args.batches:
        ratios = [r["ort_over_plan"] for r in rows if r["batch"] == batch]
        print(f"batch {batch}: geometric mean ORT/plan {float(np.exp(np.mean(np.log(ratios)))):.2f}x over {len(ratios)} models")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                       "peak_gflops": peak, "cnnkit": cnnkit.build_info(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
