"""The ops that moved from NumPy to native kernels, and the fused optimizer step, against their
NumPy implementation before the move and against PyTorch, in one process.

    python benchmarks/native_ops.py [--before REV] [--threads 2] [--rounds 7] [--json PATH]

The NumPy versions are the ones in python/cnnkit/functional.py at REV (default: the commit this
branch started from), loaded from git beside the current module. Contenders are timed by
cnnkit.bench.interleaved (interleaved rounds, medians, each settled before its sample). Ratios
are other / cnnkit: above 1, cnnkit is faster.
"""

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import bench, models, optim
from cnnkit import functional as F

ROOT = Path(__file__).resolve().parent.parent


def load_before(rev):
    """python/cnnkit/functional.py at ``rev``, imported as a submodule of today's cnnkit."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:python/cnnkit/functional.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "functional_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cnnkit.functional_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def op_cases(before, torch, rng):
    """(name, {contender: fn}) for every moved op."""
    x = rng.standard_normal((32, 64, 28, 28)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    cases = []

    def case(name, ours, old, theirs=None):
        contenders = {"cnnkit": ours, "numpy": old}
        if torch is not None and theirs is not None:
            contenders["torch"] = theirs
        cases.append((name, contenders))

    tx, tg = (torch.from_numpy(x), torch.from_numpy(g)) if torch else (None, None)
    aten = torch.ops.aten if torch else None
    for approximate in ("none", "tanh"):
        case(f"gelu[{approximate}] 32x64x28x28", lambda a=approximate: F.gelu(x, a),
             lambda a=approximate: before.gelu(x, a),
             torch and (lambda a=approximate: torch.nn.functional.gelu(tx, approximate=a)))
        case(f"gelu_backward[{approximate}]", lambda a=approximate: F.gelu_backward(g, x, a),
             lambda a=approximate: before.gelu_backward(g, x, a),
             torch and (lambda a=approximate: aten.gelu_backward(tg, tx, approximate=a)))
    case("silu 32x64x28x28", lambda: F.silu(x), lambda: before.silu(x), torch and (lambda: torch.nn.functional.silu(tx)))
    case("silu_backward", lambda: F.silu_backward(g, x), lambda: before.silu_backward(g, x),
         torch and (lambda: aten.silu_backward(tg, tx)))
    case("hardtanh 32x64x28x28", lambda: F.hardtanh(x), lambda: before.hardtanh(x),
         torch and (lambda: torch.nn.functional.hardtanh(tx)))
    case("hardtanh_backward", lambda: F.hardtanh_backward(g, x), lambda: before.hardtanh_backward(g, x),
         torch and (lambda: aten.hardtanh_backward(tg, tx, -1.0, 1.0)))

    xl = rng.standard_normal((16, 96, 27, 27)).astype(np.float32)
    gl = rng.standard_normal(xl.shape).astype(np.float32)
    txl = torch.from_numpy(xl) if torch else None
    case("local_response_norm 16x96x27x27 size 5", lambda: F.local_response_norm(xl, 5, 1e-4, 0.75, 2.0),
         lambda: before.local_response_norm(xl, 5, 1e-4, 0.75, 2.0),
         torch and (lambda: torch.nn.functional.local_response_norm(txl, 5, 1e-4, 0.75, 2.0)))

    def torch_lrn_fwd_bwd():
        t = txl.clone().requires_grad_()
        torch.nn.functional.local_response_norm(t, 5, 1e-4, 0.75, 2.0).backward(torch.from_numpy(gl))

    case("local_response_norm forward+backward",
         lambda: (F.local_response_norm(xl, 5, 1e-4, 0.75, 2.0), F.local_response_norm_backward(gl, xl, 5, 1e-4, 0.75, 2.0)),
         lambda: (before.local_response_norm(xl, 5, 1e-4, 0.75, 2.0),
                  before.local_response_norm_backward(gl, xl, 5, 1e-4, 0.75, 2.0)),
         torch and torch_lrn_fwd_bwd)

    for shape, out in (((64, 64, 8, 8), (1, 1)), ((32, 256, 13, 13), (6, 6))):
        xa = rng.standard_normal(shape).astype(np.float32)
        ga = rng.standard_normal(shape[:2] + out).astype(np.float32)
        txa, tga = (torch.from_numpy(xa), torch.from_numpy(ga)) if torch else (None, None)
        label = "x".join(map(str, shape)) + "->" + "x".join(map(str, out))
        case(f"adaptive_avg_pool2d {label}", lambda xa=xa, out=out: F.adaptive_avg_pool2d(xa, out),
             lambda xa=xa, out=out: before.adaptive_avg_pool2d(xa, out),
             torch and (lambda txa=txa, out=out: torch.nn.functional.adaptive_avg_pool2d(txa, out)))
        case(f"adaptive_avg_pool2d_backward {label}",
             lambda xa=xa, ga=ga, out=out: F.adaptive_avg_pool2d_backward(ga, xa, out),
             lambda xa=xa, ga=ga, out=out: before.adaptive_avg_pool2d_backward(ga, xa, out),
             torch and (lambda txa=txa, tga=tga: aten._adaptive_avg_pool2d_backward(tga, txa)))

    xd = rng.standard_normal((64, 4096)).astype(np.float32)
    txd = torch.from_numpy(xd) if torch else None
    gen = np.random.default_rng(0)
    case("dropout 64x4096 p=0.5", lambda: F.dropout(xd, 0.5, generator=gen, return_mask=True),
         lambda: before.dropout(xd, 0.5, generator=gen, return_mask=True),
         torch and (lambda: torch.nn.functional.dropout(txd, 0.5, training=True)))
    case("dropout2d 32x64x28x28 p=0.2", lambda: F.dropout2d(x, 0.2, generator=gen, return_mask=True),
         lambda: before.dropout2d(x, 0.2, generator=gen, return_mask=True),
         torch and (lambda: torch.nn.functional.dropout2d(tx, 0.2, training=True)))
    return cases


def optimizer_cases(torch, rng):
    """(name, {contender: fn}) for one optimizer step over a model's parameters."""
    cases = []
    nets = {"resnet20": models.resnet(depth=20), "vgg11": models.vgg("vgg11")}
    settings = {"SGD momentum=0.9 wd=5e-4": ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=5e-4)),
                "Adam": ("Adam", dict(lr=1e-3)), "AdamW": ("AdamW", dict(lr=1e-3, weight_decay=1e-2))}
    for net_name, net in nets.items():
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            p.grad = (rng.standard_normal(p.data.shape) * 1e-3).astype(np.float32)
        count = sum(p.data.size for p in params)
        for label, (kind, options) in settings.items():
            fused = getattr(optim, kind)(params, **options)
            numpy_path = getattr(optim, kind)(params, **options)
            numpy_path._native = None
            contenders = {"cnnkit": fused.step, "numpy": numpy_path.step}
            if torch is not None:
                tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
                for t, p in zip(tparams, params):
                    t.grad = torch.from_numpy(p.grad.copy())
                for foreach in (False, True):
                    topt = getattr(torch.optim, kind)(tparams, foreach=foreach, **options)
                    contenders[f"torch foreach={foreach}"] = topt.step
            cases.append((f"{kind} step {net_name} ({len(params)} tensors, {count / 1e6:.2f}M) {label}", contenders))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="608b413", help="git revision whose NumPy ops to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("ops", "optim"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cnnkit.set_num_threads(args.threads)
    torch = bench._torch(args.threads)
    rng = np.random.default_rng(0)
    cases = []
    if args.only != "optim":
        cases += op_cases(load_before(args.before), torch, rng)
    if args.only != "ops":
        cases += optimizer_cases(torch, rng)
    rows = []
    print(f"{'case':<72} {'cnnkit':>10}  ratios (other / cnnkit)")
    for name, contenders in cases:
        times = bench.interleaved(contenders, rounds=args.rounds, min_time=0.05, settle_time=0.1)
        ratios = {k: times[k] / times["cnnkit"] for k in times if k != "cnnkit"}
        rows.append({"case": name, "seconds": times, "ratio_other_over_cnnkit": ratios})
        print(f"{name:<72} {times['cnnkit'] * 1e3:8.3f}ms  " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()),
              flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": platform.processor() or platform.machine(), "threads": args.threads,
            "isa": cnnkit.get_max_isa(), "torch": torch.__version__ if torch else None,
            "before": args.before, "rounds": args.rounds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
