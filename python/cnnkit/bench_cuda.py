"""``cnnkit bench --device cuda``: cnnkit's CUDA kernels and training steps against PyTorch CUDA
(cuBLAS, cuDNN) on the same card, with the issue's targets.

Both sides get the same PyTorch CUDA tensors (cnnkit returns the caller's kind and runs on its
current stream), TF32 is off on both (float32 arithmetic only), and every sample is timed with
CUDA events around ``n`` calls, ``n`` chosen so a sample lasts about ``sample_time``; rounds
alternate the contenders' order, each contender runs untimed for ``settle_time`` before its sample,
and the median per call is reported. ``ratio`` is PyTorch time / cnnkit time (above 1: cnnkit is
faster). Memory-bound ops are also given as a fraction of the measured device-to-device copy
bandwidth (bytes read plus written), counting the fewest bytes the op must move.

The suites: ``gemm`` (SGEMM through ``linear``, square 1024 to 8192, against cuBLAS), ``targets``
(conv forward + all three gradients over shapes/targets.txt at batch 64, against cuDNN), ``ops``
(max pool, batch norm, ReLU, tanh, sigmoid, softmax, cross-entropy; also average pooling and an
Adam step, shown but outside the targets), ``models`` (LeNet-5 and ResNet-8 training
steps with SGD + momentum against PyTorch eager). An op without a CUDA kernel is reported as such
and the suite goes on.
"""

import json
import math
import statistics
import time

import numpy as np

from . import _twins, bench
from . import functional as F

__all__ = ["SUITES", "TARGETS", "cuda_timings", "copy_bandwidth", "run"]

SUITES = ("gemm", "targets", "ops", "models")

# (workload, what is compared, target) as the issue states them.
TARGETS = (
    ("SGEMM 1024-8192 square", "torch/cnnkit time, smallest over sizes", 0.8),
    ("conv fwd+bwd, targets.txt at batch 64", "geometric mean torch/cnnkit", 0.7),
    ("max pool, batch norm, activations, softmax/CE", "smallest fraction of copy bandwidth", 0.9),
    ("LeNet-5 training step, batch 64", "torch eager/cnnkit time", 2.0),
)


def _torch_cuda():
    """PyTorch with a CUDA device and TF32 off, or a RuntimeError saying what is missing."""
    import cnnkit

    if not cnnkit.cuda.is_available():
        raise RuntimeError(f"no usable CUDA device: {cnnkit.cuda.unavailable_reason()}")
    try:
        import torch
    except ImportError:
        raise RuntimeError("the CUDA bench compares with PyTorch CUDA: install torch with CUDA") from None
    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device (a CPU-only build of torch?)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch


def cuda_timings(torch, contenders, rounds=5, sample_time=0.02, settle_time=0.05):
    """Median seconds per call of each callable in ``contenders`` (name -> fn), CUDA events."""
    names = list(contenders)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def sample(fn, n):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / n

    reps = {}
    for name in names:
        contenders[name]()  # first call: module loads, handles, allocator growth
        reps[name] = max(1, int(sample_time / max(sample(contenders[name], 1), 1e-7)))
    samples = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fn = contenders[name]
            settle_until = time.perf_counter() + settle_time
            while time.perf_counter() < settle_until:
                fn()
            samples[name].append(sample(fn, reps[name]))
    return {name: statistics.median(v) for name, v in samples.items()}


def copy_bandwidth(torch, rounds=5, floats=1 << 26):
    """Device-to-device copy bandwidth in bytes/s (bytes read plus bytes written)."""
    src = torch.randn(floats, device="cuda")
    dst = torch.empty_like(src)
    seconds = cuda_timings(torch, {"copy": lambda: dst.copy_(src)}, rounds)["copy"]
    return 2 * 4 * floats / seconds


class _Rows:
    def __init__(self, torch, rounds, bandwidth):
        self.torch, self.rounds, self.bandwidth, self.rows = torch, rounds, bandwidth, []

    def time(self, suite, name, ours, theirs, flops=0.0, nbytes=0, target=True):
        """One row: cnnkit's ``ours`` against PyTorch's ``theirs``; a missing kernel is a row too.
        ``target=False``: a row outside the issue's targets (reported, not judged)."""
        row = {"suite": suite, "name": name, "target": target}
        try:
            times = cuda_timings(self.torch, {"cnnkit": ours, "torch": theirs}, self.rounds)
        except NotImplementedError as e:
            row["missing"] = str(e)
            print(f"{suite:<8}{name:<34}not run: {e}", flush=True)
            self.rows.append(row)
            return row
        row["seconds"] = times
        row["ratio"] = times["torch"] / times["cnnkit"]
        line = f"{suite:<8}{name:<34}cnnkit {times['cnnkit'] * 1e3:9.3f} ms  torch {times['torch'] * 1e3:9.3f} ms"
        if flops:
            row["gflops"] = {k: flops / v / 1e9 for k, v in times.items()}
            line += f"  {row['gflops']['cnnkit']:8.0f} GF/s"
        if nbytes:
            row["copy_fraction"] = {k: nbytes / v / self.bandwidth for k, v in times.items()}
            line += f"  {100 * row['copy_fraction']['cnnkit']:5.1f}% of copy bw"
        print(f"{line}  ratio torch/cnnkit {row['ratio']:.2f}x", flush=True)
        self.rows.append(row)
        return row

    def of(self, suite):
        return [r for r in self.rows if r["suite"] == suite and "ratio" in r and r["target"]]


def _randn(torch, *shape):
    return torch.randn(*shape, device="cuda")


def bench_gemm(rows, sizes=(1024, 2048, 4096, 8192)):
    torch = rows.torch
    for n in sizes:
        a, b = _randn(torch, n, n), _randn(torch, n, n)
        rows.time("gemm", f"sgemm {n}^3 (linear, B^T)", lambda: F.linear(a, b),
                  lambda: torch.nn.functional.linear(a, b), flops=2.0 * n**3)


def bench_targets(rows, batch=64):
    torch = rows.torch
    tf = torch.nn.functional
    for s in bench.load_shapes("targets"):
        s = s._replace(N=batch)
        x, w, b = _randn(torch, s.N, s.C, s.H, s.W), _randn(torch, s.K, s.C // s.groups, s.kh, s.kw), _randn(torch, s.K)
        args = (s.stride, s.pad, s.dilation, s.groups)
        dy = torch.randn_like(tf.conv2d(x, w, b, *args))
        xg, wg, bg = (v.clone().requires_grad_(True) for v in (x, w, b))

        def ours():
            F.conv2d(x, w, b, *args)
            F.conv2d_backward(dy, x, w, *args, bias_grad=True)

        def theirs():
            torch.autograd.grad(tf.conv2d(xg, wg, bg, *args), (xg, wg, bg), dy)

        rows.time("conv", f"{s.name} f+b b{batch}", ours, theirs, flops=3 * bench.conv_flops(s))


def bench_ops(rows):
    torch = rows.torch
    tf, aten = torch.nn.functional, torch.ops.aten
    x = _randn(torch, 64, 64, 56, 56)
    g = torch.randn_like(x)
    size = 4 * x.numel()
    rows.time("ops", "max_pool 2x2/2 64x64x56x56", lambda: F.max_pool2d(x, 2, 2),
              lambda: tf.max_pool2d(x, 2, 2), nbytes=size + size // 4)
    rows.time("ops", "relu 64x64x56x56", lambda: F.relu(x), lambda: torch.relu(x), nbytes=2 * size)
    rows.time("ops", "relu_backward 64x64x56x56", lambda: F.relu_backward(g, x),
              lambda: aten.threshold_backward(g, x, 0.0), nbytes=3 * size)
    for name, theirs in (("tanh", lambda: aten.tanh_backward(g, torch.tanh(x))),
                         ("sigmoid", lambda: aten.sigmoid_backward(g, torch.sigmoid(x)))):
        fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
        rows.time("ops", f"{name} f+b 64x64x56x56", lambda fwd=fwd, bwd=bwd: (fwd(x), bwd(g, x)), theirs,
                  nbytes=5 * size)
    rows.time("ops", "avg_pool 2x2/2 64x64x56x56", lambda: F.avg_pool2d(x, 2, 2), lambda: tf.avg_pool2d(x, 2, 2),
              nbytes=size + size // 4, target=False)
    c = x.shape[1]
    w, b = torch.rand(c, device="cuda") + 0.5, _randn(torch, c)
    rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
    rows.time("ops", "batch_norm train 64x64x56x56", lambda: F.batch_norm(x, rm, rv, w, b, training=True),
              lambda: tf.batch_norm(x, rm, rv, w, b, training=True), nbytes=2 * size)
    logits = _randn(torch, 65536, 1000) * 4
    target = torch.randint(0, 1000, (65536,), device="cuda")
    lsize = 4 * logits.numel()
    rows.time("ops", "softmax 65536x1000", lambda: F.softmax(logits, 1), lambda: torch.softmax(logits, 1),
              nbytes=2 * lsize)

    def ce_theirs():
        lp = aten._log_softmax(logits, 1, False)
        aten.nll_loss_forward(lp, target, None, 1, -100)
        gnll = aten.nll_loss_backward(torch.tensor(1.0, device="cuda"), lp, target, None, 1, -100,
                                      torch.tensor(65536.0, device="cuda"))
        aten._log_softmax_backward_data(gnll, lp, 1, torch.float32)

    rows.time("ops", "cross_entropy f+b 65536x1000",
              lambda: (F.cross_entropy(logits, target), F.cross_entropy_backward(logits, target)), ce_theirs,
              nbytes=3 * lsize)
    _bench_adam(rows, 1 << 24)


def _bench_adam(rows, n):
    """One Adam step on an n-element parameter: cnnkit's fused step against torch's fused Adam."""
    from . import nn, optim

    torch = rows.torch
    ours = nn.Parameter(_randn(torch, n))
    ours.grad = _randn(torch, n)
    theirs = torch.nn.Parameter(ours.data.clone())
    theirs.grad = ours.grad.clone()
    opt, topt = optim.Adam([ours], lr=1e-3), torch.optim.Adam([theirs], lr=1e-3, fused=True)
    # Reads parameter, gradient and both moments; writes parameter and moments.
    rows.time("ops", f"adam step {n} floats", opt.step, topt.step, nbytes=7 * 4 * n, target=False)


def bench_models(rows, cases=(("lenet5", 64), ("resnet8", 64))):
    from . import models, nn, optim

    torch = rows.torch
    for name, batch in cases:
        ours, shape = (models.lenet5(), bench._MODEL_INPUTS["lenet5"]) if name == "lenet5" else (
            models.resnet(8), bench._MODEL_INPUTS["resnet"])
        twin = _twins.torch_twin(torch, ours).cuda().train()
        ours.to("cuda", library="torch").train()
        x = _randn(torch, batch, *shape)
        y = torch.randint(0, 10, (batch,), device="cuda")
        crit, opt = nn.CrossEntropyLoss(), optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
        topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)

        def step():
            crit(ours(x), y)
            opt.zero_grad()
            ours.backward(crit.backward(), input_grad=False)
            opt.step()

        def torch_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(twin(x), y).backward()
            topt.step()

        rows.time("models", f"{name} train step b{batch}", step, torch_step)


def _targets_table(rows):
    """(workload, measure, target, measured or None) for the issue's table."""
    gemm = [r["ratio"] for r in rows.of("gemm")]
    conv = [r["ratio"] for r in rows.of("conv")]
    ops = [r["copy_fraction"]["cnnkit"] for r in rows.of("ops")]
    lenet = [r["ratio"] for r in rows.of("models") if r["name"].startswith("lenet5")]
    measured = (min(gemm, default=None), math.exp(np.mean(np.log(conv))) if conv else None,
                min(ops, default=None), lenet[0] if lenet else None)
    return [(w, m, t, v) for (w, m, t), v in zip(TARGETS, measured)]


def run(suites=SUITES, rounds=5, json_path=None):
    """Run the chosen CUDA suites, print the rows and the targets table; return the rows."""
    for suite in suites:
        if suite not in SUITES:
            raise ValueError(f"unknown CUDA suite {suite!r}; choose from {', '.join(SUITES)}")
    torch = _torch_cuda()
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth(torch, rounds)
    print(f"{device}; torch {torch.__version__}, TF32 off on both sides; device-to-device copy "
          f"{bandwidth / 1e9:.0f} GB/s (read + write)")
    rows = _Rows(torch, rounds, bandwidth)
    runners = {"gemm": bench_gemm, "targets": bench_targets, "ops": bench_ops, "models": bench_models}
    for suite in suites:
        runners[suite](rows)
    table = _targets_table(rows)
    print(f"\n| workload | measure | target | measured on {device} |\n|---|---|---|---|")
    for workload, measure, target, value in table:
        shown = "not run" if value is None else f"{value:.2f}"
        print(f"| {workload} | {measure} | {target} | {shown} |")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "copy_bytes_per_s": bandwidth,
                       "rows": rows.rows, "targets": [dict(zip(("workload", "measure", "target", "measured"), t))
                                                      for t in table]}, f, indent=2)
        print(f"wrote {json_path}")
    return rows.rows
