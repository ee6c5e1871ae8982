"""The benchmark harness: cnnkit's kernels and whole models against NumPy and PyTorch.

Every comparison is interleaved (one run of each contender per round, the
order alternating) and reported as the median over rounds, so a noisy shared
machine slows both sides alike. Rates are GFLOP/s (2 flops per multiply-add)
and a percentage of the machine's measured peak (FMA chains in registers
on the same number of threads, at the widest ISA cnnkit is allowed to use; see
:func:`measure_peak` for why it is a ceiling). ``ratio`` is peer time / cnnkit time:
above 1 means cnnkit is faster.
"""

import json
import os
import platform
import statistics
import time
import warnings
from collections import namedtuple

import numpy as np

from . import functional as F

__all__ = [
    "ConvShape", "SUITES", "shape_files", "load_shapes", "conv_flops", "interleaved", "measure_peak",
    "Report", "bench_conv", "bench_gemm", "bench_pool", "bench_ops", "bench_linear", "bench_models",
    "bench_model_layers", "ZOO_MODELS", "bench_torch", "bench_dist", "run",
]

ConvShape = namedtuple("ConvShape", "name N C H W K kh kw stride pad dilation groups")

_SHAPES_DIR = os.path.join(os.path.dirname(__file__), "shapes")


def shape_files():
    """The bundled shape files (network name -> path)."""
    return {f[:-4]: os.path.join(_SHAPES_DIR, f) for f in sorted(os.listdir(_SHAPES_DIR)) if f.endswith(".txt")}


def load_shapes(name_or_path):
    """Convolution layers from a shape file: one layer per line,
    ``name N C H W K kh kw stride pad dilation groups``; ``#`` starts a comment."""
    path = shape_files().get(name_or_path, name_or_path)
    shapes = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) != 12:
                raise ValueError(f"{path}:{lineno}: expected 12 fields, got {len(line)}")
            shapes.append(ConvShape(line[0], *map(int, line[1:])))
    return shapes


def conv_flops(s):
    ho = (s.H + 2 * s.pad - s.dilation * (s.kh - 1) - 1) // s.stride + 1
    wo = (s.W + 2 * s.pad - s.dilation * (s.kw - 1) - 1) // s.stride + 1
    return 2.0 * s.N * s.K * ho * wo * (s.C // s.groups) * s.kh * s.kw


# What ``interleaved`` times samples with: wall time, or with ``run(clock="cpu")`` the process's
# CPU time, which on a machine whose cores other processes keep busy leaves out the time this one
# waited for a core (one thread only: with more, workers spinning at a barrier count as work).
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_sample_clock = [time.perf_counter]


def interleaved(contenders, rounds=7, min_time=0.05, settle_time=0.1):
    """Median seconds per call of each callable in ``contenders`` (name -> fn).

    Each callable is first warmed up and its calls-per-sample chosen so one
    sample takes about ``min_time``; its first call comes after a pause of twice
    ``settle_time``, when no other library's threads still spin, because it may
    time its own choices (cnnkit's inference plans and conv autotuning measure
    on their first call, and keep what they chose); then every round times one
    sample of each, in an order that alternates between rounds. Before each sample the callable
    runs untimed for ``settle_time``: a library whose idle threads keep spinning
    after its calls would otherwise slow down whichever contender is timed right
    after it (PyTorch's OpenMP workers spin for milliseconds, OpenBLAS's for
    60-100 ms; on 2 cores that halves the next contender's 2-thread speed).
    Samples are wall time unless :func:`run` chose CPU time.
    """
    clock = _sample_clock[0]
    names = list(contenders)
    reps = {}
    for name in names:
        fn = contenders[name]
        time.sleep(2 * settle_time)
        fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        reps[name] = max(1, int(min_time / once))
    samples = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fn, n = contenders[name], reps[name]
            settle_until = time.perf_counter() + settle_time
            while time.perf_counter() < settle_until:
                fn()
            t0 = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t0) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


def _torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _limit_blas_threads(threads):
    """Give NumPy's BLAS the same thread count as cnnkit and torch (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: threadpoolctl is not installed, so NumPy's BLAS keeps its own thread count")
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def measure_peak(threads, trials=3, seconds=0.2):
    """A ceiling on the machine's float32 rate in GFLOP/s on ``threads`` threads: register-only
    FMA chains at the widest ISA cnnkit runs.

    It is the larger of the best all-thread rate and ``threads`` times the best
    one-thread rate, over ``trials`` alternating trials of ``seconds`` each. On a
    shared machine another process can hold a core through every all-thread
    sample, which then reads low (a kernel timed later ran at 102.9% of such a
    peak); one thread at a time finds a free core. On a CPU whose threads share
    cores (SMT) the ceiling is that much higher than what the cores can reach.
    """
    from . import _C

    best_all = best_one = 0.0
    for _ in range(trials):
        best_all = max(best_all, _C.peak_gflops(threads, seconds))
        best_one = max(best_one, _C.peak_gflops(1, seconds))
    return max(best_all, threads * best_one)


class Report:
    """Rows of results; prints a table and writes JSON."""

    def __init__(self, peak_gflops, threads):
        self.peak = peak_gflops
        self.threads = threads
        self.rows = []
        self.summary = {}

    def add(self, suite, name, flops, times, ours="cnnkit", peer=None):
        row = {"suite": suite, "name": name, "flops": flops,
               "seconds": {k: v for k, v in times.items()}}
        if flops:
            row["gflops"] = {k: flops / v / 1e9 for k, v in times.items()}
            row["pct_peak"] = {k: 100.0 * flops / v / 1e9 / self.peak for k, v in times.items()}
            if max(row["pct_peak"].values()) > 100.0:
                row["above_peak"] = True
        if peer is not None and peer in times:
            row["ratio"] = times[peer] / times[ours]
        self.rows.append(row)
        self._print(row, ours, peer)
        return row

    def _print(self, row, ours, peer):
        t = row["seconds"]
        parts = [f"{row['suite']:<10}{row['name']:<28}"]
        if len(row["name"]) >= 28:  # a model layer's long name: the times stay aligned on the next line
            parts = [f"{row['suite']:<10}{row['name']}\n{'':<38}"]
        for k in t:
            mark = "!" if "gflops" in row and row["pct_peak"][k] > 100.0 else " "
            rate = f" {row['gflops'][k]:7.1f} GF/s {row['pct_peak'][k]:5.1f}%{mark}" if "gflops" in row else ""
            parts.append(f"{k}: {t[k] * 1e3:9.3f} ms{rate}")
        if "ratio" in row:
            parts.append(f"ratio {peer}/{ours}: {row['ratio']:.2f}x")
        print("  ".join(parts), flush=True)

    def note_above_peak(self):
        """Why a rate can exceed the peak, printed under a table that has such a row."""
        if any(r.get("above_peak") for r in self.rows):
            print("! above the measured peak: rates count a convolution's direct FLOPs, and a compiled plan "
                  "may run 3x3 and 5x5 layers as Winograd F(2x2, 3x3) or F(2x2, 5x5) (16 multiplications where "
                  "the direct sum takes 36, 36 where it takes 100); else the peak was measured while other "
                  "processes held cores, or this timing is one lucky round (use more --rounds); the percentage "
                  "is not a bound there")

    def geomean_ratio(self, suite):
        ratios = [r["ratio"] for r in self.rows if r["suite"] == suite and "ratio" in r]
        return float(np.exp(np.mean(np.log(ratios)))) if ratios else None

    def to_json(self, path):
        doc = {"machine": platform.machine(), "processor": platform.processor(), "threads": self.threads,
               "peak_gflops": self.peak, "rows": self.rows, "summary": self.summary}
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)


def _conv_inputs(s, rng):
    x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
    w = rng.standard_normal((s.K, s.C // s.groups, s.kh, s.kw)).astype(np.float32)
    b = rng.standard_normal(s.K).astype(np.float32)
    return x, w, b


def bench_conv(report, shapes, torch, rounds, algos=("auto", "direct", "im2col"), backward=True):
    rng = np.random.default_rng(0)
    for s in shapes:
        x, w, b = _conv_inputs(s, rng)
        args = (s.stride, s.pad, s.dilation, s.groups)
        flops = conv_flops(s)
        fwd = {f"cnnkit-{a}": (lambda a=a: F.conv2d(x, w, b, *args, algo=a)) for a in algos}
        if torch is not None:
            xt, wt, bt = (torch.from_numpy(v) for v in (x, w, b))
            fwd["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt, s.stride, s.pad, s.dilation, s.groups)
        report.add("conv-fwd", s.name, flops, interleaved(fwd, rounds), ours="cnnkit-auto",
                   peer="torch" if torch is not None else None)
        if not backward:
            continue
        y = F.conv2d(x, w, b, *args)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        both = {"cnnkit-auto": lambda: (F.conv2d(x, w, b, *args),
                                        F.conv2d_backward(dy, x, w, *args, bias_grad=True))}
        if torch is not None:
            xg = torch.from_numpy(x).requires_grad_(True)
            wg = torch.from_numpy(w).requires_grad_(True)
            bg = torch.from_numpy(b).requires_grad_(True)
            dyt = torch.from_numpy(dy)

            def torch_fwd_bwd():
                out = torch.nn.functional.conv2d(xg, wg, bg, s.stride, s.pad, s.dilation, s.groups)
                torch.autograd.grad(out, (xg, wg, bg), dyt)

            both["torch"] = torch_fwd_bwd
        report.add("conv-f+b", s.name, 3 * flops, interleaved(both, rounds), ours="cnnkit-auto",
                   peer="torch" if torch is not None else None)


def bench_gemm(report, sizes, rounds):
    from . import _C

    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        report.add("sgemm", f"{n}^3", 2.0 * n**3,
                   interleaved({"cnnkit": lambda: _C.sgemm(a, b), "numpy": lambda: a @ b}, rounds),
                   peer="numpy")


def bench_pool(report, torch, rounds):
    x = np.random.default_rng(0).standard_normal((32, 64, 56, 56)).astype(np.float32)
    c = {"cnnkit": lambda: F.max_pool2d(x, 3, 2)}
    if torch is not None:
        xt = torch.from_numpy(x)
        c["torch"] = lambda: torch.nn.functional.max_pool2d(xt, 3, 2)
    report.add("pool", "max3x3s2 32x64x56x56", 0, interleaved(c, rounds),
               peer="torch" if torch is not None else None)


def _op_cases(torch, rng):
    """Memory-bound and elementwise ops as {name: (cnnkit fn, torch fn or None)}, forward and
    backward timed together (torch's backward through its aten kernels, without autograd)."""
    cases = {}
    tf = torch.nn.functional if torch is not None else None
    aten = torch.ops.aten if torch is not None else None

    def tensors(*arrays):
        return [torch.from_numpy(a) for a in arrays] if torch is not None else [None] * len(arrays)

    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32) * 3
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx, tg = tensors(x, g)
    torch_act = {
        "tanh": lambda: aten.tanh_backward(tg, torch.tanh(tx)),
        "sigmoid": lambda: aten.sigmoid_backward(tg, torch.sigmoid(tx)),
        "elu": lambda: aten.elu_backward(tg, 1.0, 1.0, 1.0, False, tf.elu(tx)),
        "relu": lambda: aten.threshold_backward(tg, torch.relu(tx), 0.0),
    }
    for name, theirs in torch_act.items():
        fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
        cases[f"{name} 64x6x28x28"] = (lambda fwd=fwd, bwd=bwd: (fwd(x), bwd(g, x)), theirs if torch else None)

    gp = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    (tgp,) = tensors(gp)
    cases["avg_pool 2x2/2 64x6x28x28"] = (
        lambda: (F.avg_pool2d(x, 2, 2), F.avg_pool2d_backward(gp, x, 2, 2)),
        (lambda: (tf.avg_pool2d(tx, 2, 2),
                  aten.avg_pool2d_backward(tgp, tx, [2, 2], [2, 2], [0, 0], False, True, None))) if torch else None,
    )

    for shape in ((32, 64, 56, 56), (64, 16, 10, 10)):
        c = shape[1]
        xb = rng.standard_normal(shape).astype(np.float32) + 3
        gb = rng.standard_normal(shape).astype(np.float32)
        w = rng.random(c).astype(np.float32) + 0.5
        b = rng.standard_normal(c).astype(np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        txb, tgb, tw, tb, trm, trv = tensors(xb, gb, w, b, rm.copy(), rv.copy())

        def bn_ours(xb=xb, gb=gb, w=w, b=b, rm=rm, rv=rv):
            F.batch_norm(xb, rm, rv, w, b, training=True)
            F.batch_norm_backward(gb, xb, None, None, w, training=True)

        def bn_theirs(txb=txb, tgb=tgb, tw=tw, tb=tb, trm=trm, trv=trv):
            _, mean, invstd = aten.native_batch_norm(txb, tw, tb, trm, trv, True, 0.1, 1e-5)
            aten.native_batch_norm_backward(tgb, txb, tw, trm, trv, mean, invstd, True, 1e-5, [True, True, True])

        cases["batch_norm train " + "x".join(map(str, shape))] = (bn_ours, bn_theirs if torch else None)

    logits = rng.standard_normal((256, 1000)).astype(np.float32) * 4
    gl = rng.standard_normal(logits.shape).astype(np.float32)
    target = rng.integers(0, 1000, 256)
    tl, tgl, tt = tensors(logits, gl, target)

    def softmax_theirs():
        aten._softmax_backward_data(tgl, torch.softmax(tl, -1), -1, torch.float32)

    def ce_theirs():
        lp = aten._log_softmax(tl, 1, False)
        aten.nll_loss_forward(lp, tt, None, 1, -100)
        gnll = aten.nll_loss_backward(torch.tensor(1.0), lp, tt, None, 1, -100, torch.tensor(256.0))
        aten._log_softmax_backward_data(gnll, lp, 1, torch.float32)

    cases["softmax 256x1000"] = (lambda: F.softmax_backward(gl, F.softmax(logits)), softmax_theirs if torch else None)
    cases["cross_entropy 256x1000"] = (
        lambda: (F.cross_entropy(logits, target), F.cross_entropy_backward(logits, target)),
        ce_theirs if torch else None,
    )
    return cases


def bench_ops(report, torch, rounds):
    for name, (ours, theirs) in _op_cases(torch, np.random.default_rng(0)).items():
        c = {"cnnkit": ours}
        if theirs is not None:
            c["torch"] = theirs
        report.add("ops", name, 0, interleaved(c, rounds), peer="torch" if theirs is not None else None)


def bench_linear(report, torch, rounds, layers=((3136, 1024), (400, 120), (84, 10)), batches=(1, 4, 16, 64)):
    """Linear layers forward and backward (input, weight and bias gradients) at small batches."""
    rng = np.random.default_rng(0)
    for fin, fout in layers:
        w = rng.standard_normal((fout, fin)).astype(np.float32)
        b = rng.standard_normal(fout).astype(np.float32)
        for batch in batches:
            x = rng.standard_normal((batch, fin)).astype(np.float32)
            g = rng.standard_normal((batch, fout)).astype(np.float32)
            c = {"cnnkit": lambda x=x, g=g, w=w, b=b: (F.linear(x, w, b), F.linear_backward(g, x, w))}
            if torch is not None:
                tx, tg, tw, tb = (torch.from_numpy(a) for a in (x, g, w, b))

                def theirs(tx=tx, tg=tg, tw=tw, tb=tb):
                    with torch.no_grad():
                        torch.nn.functional.linear(tx, tw, tb)
                        torch.mm(tg, tw)
                        torch.mm(tg.t(), tx)
                        tg.sum(0)

                c["torch"] = theirs
            report.add("linear", f"{fin}->{fout} b{batch}", 3 * 2.0 * batch * fin * fout, interleaved(c, rounds),
                       peer="torch" if torch is not None else None)


# The input each benchmarkable zoo model takes: MNIST digits or 32x32 colour images. The
# Inception and DenseNet entries are not in the default run: one round of them at batch 64
# takes minutes (most of it in PyTorch) on a small machine.
_MODEL_INPUTS = {"lenet5": (1, 28, 28), "mnist_cnn": (1, 28, 28), "resnet": (3, 32, 32), "resnet20": (3, 32, 32),
                 "vgg11": (3, 32, 32), "alexnet": (3, 32, 32), "inception": (3, 32, 32), "densenet": (3, 32, 32)}

# The zoo models of ``bench models``, each built with the zoo's defaults.
ZOO_MODELS = ("lenet5", "mnist_cnn", "resnet20", "vgg11", "alexnet")


def _zoo_model(name):
    from . import models

    builders = {"resnet20": lambda: models.resnet(20), "vgg11": lambda: models.vgg("vgg11")}
    if name in builders:
        return builders[name]()
    if name not in _MODEL_INPUTS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ZOO_MODELS)}")
    return getattr(models, name)()


def _leaf_layers(model, x):
    """(name, module, input shape, output shape) of every leaf layer that ``model(x)`` calls, in
    call order (the recorder ``Module.summary`` uses)."""
    from .nn import module as nn_module

    rows = []
    nn_module._summary_recorder[0] = rows
    try:
        model(x)
    finally:
        nn_module._summary_recorder[0] = None
    names = {id(m): name for name, m in model.named_modules()}
    return [(names.get(id(m), "?"), m, tuple(i), tuple(o)) for m, i, o in rows]


def _dense_flops(layers):
    """Conv and linear FLOPs of one forward pass over the recorded layers (their batch included),
    and the first such layer's: the training step computes no input gradient for it."""
    from . import nn

    dense = [m.flops(i, o) * o[0] for _, m, i, o in layers if isinstance(m, (nn.Conv2d, nn.Linear))]
    return float(sum(dense)), float(dense[0] if dense else 0)


def _inference_fn(model, input_shape):
    """What answers a batch of ``input_shape`` images in eval mode: the compiled inference plan
    where the model offers one (``compile_inference``), else the layer-by-layer forward. Returns
    (callable, "plan"/"layers"); a plan keeps the model's weights read-only until it is released."""
    compile_inference = getattr(model, "compile_inference", None)
    if compile_inference is None:
        return model, "layers"
    return compile_inference(input_shape), "plan"


def _onnx_session(torch, twin, x, threads):
    """An ONNX Runtime session running the twin's ONNX export (batch dimension dynamic), or None
    with a printed reason when onnx/onnxruntime are missing or the export fails."""
    import io

    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime as ort
    except ImportError as e:
        print(f"note: ONNX Runtime is skipped ({e.name} is not installed); pip install \"cnnkit[bench]\"")
        return None
    buf = io.BytesIO()
    twin.eval()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of torch.export's, which needs
            # onnxscript and gives the same graph for these layers; its notes on constant folding
            # are about graphs ORT optimises again anyway.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(twin, (torch.from_numpy(x),), buf, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    except Exception as e:  # an exporter failure skips this contender, not the benchmark
        print(f"note: ONNX Runtime is skipped: the ONNX export failed ({type(e).__name__}: {e})")
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def _add_model_row(report, suite, name, flops, times):
    """A model row, its ratio against PyTorch (``ratio``) and every peer (``ratios``)."""
    peers = [p for p in ("torch", "onnxruntime") if p in times]
    row = report.add(suite, name, flops, times, peer=peers[0] if peers else None)
    row["ratios"] = {p: times[p] / times["cnnkit"] for p in peers}
    if len(peers) > 1:
        print(f"{'':<38}ratio onnxruntime/cnnkit: {row['ratios']['onnxruntime']:.2f}x")
    return row


def bench_models(report, torch, rounds, names=ZOO_MODELS, train_batch=64, infer_batches=(1, 64), threads=1,
                 use_onnx=True):
    """Whole zoo models against their weight-identical PyTorch twin and its ONNX export in ONNX
    Runtime: a training step at ``train_batch`` (forward, cross-entropy, backward, SGD with momentum)
    and inference at each of ``infer_batches``. Each row's rate counts the conv and linear FLOPs
    (three passes for training, less the first layer's input gradient, which neither side computes)."""
    from . import nn, optim

    for name in names:
        model = _zoo_model(name)
        shape = _MODEL_INPUTS[name]
        twin = None
        if torch is not None:
            from ._twins import torch_twin

            twin = torch_twin(torch, model)
        rng = np.random.default_rng(0)
        session = None
        for batch in infer_batches:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
            model.eval()
            fwd_flops, _ = _dense_flops(_leaf_layers(model, x))
            infer, path = _inference_fn(model, shape)
            c = {"cnnkit": lambda infer=infer, x=x: infer(x)}
            if twin is not None:
                twin.eval()
                xt = torch.from_numpy(x)

                def torch_infer(xt=xt):
                    with torch.inference_mode():
                        twin(xt)

                c["torch"] = torch_infer
                if use_onnx and session is None:
                    session = _onnx_session(torch, twin, x, threads) or False
                if session:
                    c["onnxruntime"] = lambda x=x: session.run(None, {"x": x})
            row = _add_model_row(report, "infer", f"{name} b{batch}", fwd_flops, interleaved(c, rounds))
            row["cnnkit_path"] = path
            if path == "plan":
                infer.release()  # the training step below updates the weights
        x = rng.standard_normal((train_batch, *shape)).astype(np.float32)
        y = rng.integers(0, 10, train_batch)
        model.train()
        fwd_flops, first = _dense_flops(_leaf_layers(model, x))
        crit = nn.CrossEntropyLoss()
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(x=x, y=y, crit=crit, opt=opt):
            crit(model(x), y)
            opt.zero_grad()
            model.backward(crit.backward(), input_grad=False)
            opt.step()

        c = {"cnnkit": step}
        if twin is not None:
            twin.train()
            topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def torch_step(xt=xt, yt=yt, topt=topt):
                topt.zero_grad()
                torch.nn.functional.cross_entropy(twin(xt), yt).backward()
                topt.step()

            c["torch"] = torch_step
        _add_model_row(report, "train", f"{name} b{train_batch}", 3 * fwd_flops - first,
                       interleaved(c, rounds))


def bench_model_layers(report, torch, rounds, name, batch=64):
    """Each leaf layer of one zoo model at ``batch``, forward and backward (input and parameter
    gradients) in training mode, against the same layer of the torch twin: where a training step's
    time goes and at what % of the peak each conv and linear layer runs."""
    from . import nn

    model = _zoo_model(name).train()
    x = np.random.default_rng(0).standard_normal((batch, *_MODEL_INPUTS[name])).astype(np.float32)
    layers = _leaf_layers(model, x)
    theirs = {}
    if torch is not None:
        from ._twins import torch_twin

        theirs = dict(torch_twin(torch, model).train().named_modules())
    rng = np.random.default_rng(1)
    for i, (lname, m, in_shape, out_shape) in enumerate(layers):
        if isinstance(m, (nn.Identity, nn.Flatten)):
            continue
        xi = rng.standard_normal(in_shape).astype(np.float32)
        gi = rng.standard_normal(out_shape).astype(np.float32)
        # The first layer's input gradient is skipped in a training step; so here.
        need_dx = i > 0
        dense = isinstance(m, (nn.Conv2d, nn.Linear))
        flops = m.flops(in_shape, out_shape) * batch * (3 if need_dx else 2) if dense else 0

        def ours(m=m, xi=xi, gi=gi, need_dx=need_dx):
            m(xi)
            m.backward(gi, input_grad=need_dx)

        c = {"cnnkit": ours}
        tm = theirs.get(lname)
        if tm is not None:
            txi = torch.from_numpy(xi).requires_grad_(need_dx)
            tgi = torch.from_numpy(gi)

            def torch_layer(tm=tm, txi=txi, tgi=tgi):
                out = tm(txi)
                if out.requires_grad:
                    out.backward(tgi)

            c["torch"] = torch_layer
        row = report.add("layer", f"{name}.{lname} {type(m).__name__}", flops, interleaved(c, rounds),
                         peer="torch" if tm is not None else None)
        row.update(output_shape=list(out_shape), layer_type=type(m).__name__)
    _summarize_layers(report, name)


def _summarize_layers(report, model):
    """The layer rows' seconds summed per layer type: which kind of layer a step spends its time
    in, on each side. Into ``report.summary["layers"]`` and printed."""
    totals = {}
    for r in report.rows:
        if r["suite"] == "layer" and r["name"].startswith(model + "."):
            per_type = totals.setdefault(r["layer_type"], {})
            for k, v in r["seconds"].items():
                per_type[k] = per_type.get(k, 0.0) + v
    everything = {k: sum(t.get(k, 0.0) for t in totals.values()) for k in ("cnnkit", "torch")}
    for kind, t in sorted(totals.items(), key=lambda kv: -kv[1]["cnnkit"]):
        share = 100.0 * t["cnnkit"] / everything["cnnkit"]
        versus = f", torch {t['torch'] * 1e3:.2f} ms ({t['torch'] / t['cnnkit']:.2f}x)" if "torch" in t else ""
        print(f"{model} {kind}: cnnkit {t['cnnkit'] * 1e3:.2f} ms ({share:.0f}% of its layer time){versus}")
    report.summary.setdefault("layers", {})[model] = {"seconds_by_type": totals}


def bench_torch(report, torch, rounds, batches=(("lenet5", 64), ("resnet8", 32))):
    """A torch training step (SGD with momentum), plain PyTorch against the same model (same
    weights) with :func:`cnnkit.torch.accelerate`: LeNet-5 on 28x28 digits and a CIFAR-sized
    ResNet-8 (three basic blocks, batch norm). ``ratio`` above 1: the accelerated step is faster."""
    import copy

    from . import models
    from . import torch as ct
    from ._twins import torch_twin

    for name, batch in batches:
        ours, shape = (models.lenet5(), _MODEL_INPUTS["lenet5"]) if name == "lenet5" else (
            models.resnet(8), _MODEL_INPUTS["resnet"])
        plain = torch_twin(torch, ours)
        fast = ct.accelerate(copy.deepcopy(plain))
        rng = np.random.default_rng(batch)
        x = torch.from_numpy(rng.standard_normal((batch, *shape)).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, 10, batch))

        def step(model, crit, opt):
            opt.zero_grad()
            crit(model(x), y).backward()
            opt.step()

        contenders = {}
        for key, model in (("torch", plain), ("accelerated", fast)):
            model.train()
            crit = torch.nn.CrossEntropyLoss()
            if key == "accelerated":
                ct.accelerate(crit)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            contenders[key] = lambda model=model, crit=crit, opt=opt: step(model, crit, opt)
        report.add("torch", f"{name} train b{batch}", 0, interleaved(contenders, rounds),
                   ours="accelerated", peer="torch")


# (row name, cnnkit.models function, its arguments, image shape, batch per rank)
_DIST_CASES = (("lenet5", "lenet5", {}, (1, 28, 28), 64), ("resnet20", "resnet", {"depth": 20}, (3, 32, 32), 32))


def _dist_rows(rounds, sample_time=0.1, cases=_DIST_CASES):
    """Data-parallel training steps at this job's rank count, as row arguments for Report.add.

    Every rank makes the same calls (the repetitions are rank 0's choice) and a barrier closes
    each sample, so a sample lasts as long as the slowest rank. ``step`` is a whole step with
    the gradient averaging, ``compute`` the same step under ``no_sync()`` (no communication),
    ``allreduce`` one blocking allreduce of all the gradients in one buffer, ``wait`` the time
    the end of backward waited for its allreduces: the communication that overlapping with
    backward did not hide, plus any wait for a slower rank.
    """
    from . import distributed, models, nn, optim

    ranks = distributed.world_size()
    rows = []
    for name, model, kwargs, shape, batch in cases:
        rng = np.random.default_rng(distributed.rank())
        ddp = distributed.DistributedDataParallel(getattr(models, model)(**kwargs))
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        crit, opt = nn.CrossEntropyLoss(), optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        grads = np.zeros(sum(p.data.size for p in ddp.parameters()), np.float32)
        waits = []

        def step():
            crit(ddp(x), y)
            opt.zero_grad()
            ddp.backward(crit.backward(), input_grad=False)
            opt.step()

        def synced():
            step()
            waits.append(ddp.last_comm_wait)

        def compute():
            with ddp.no_sync():
                step()

        contenders = {"step": synced, "compute": compute}
        if ranks > 1:
            contenders["allreduce"] = lambda: distributed.all_reduce(grads)
        reps = {}
        for key, fn in contenders.items():
            fn()
            t0 = time.perf_counter()
            fn()
            mine = np.array(max(1, int(sample_time / (time.perf_counter() - t0))))
            reps[key] = int(distributed.broadcast(mine))
        samples = {key: [] for key in contenders}
        for r in range(rounds):
            for key in contenders if r % 2 == 0 else reversed(list(contenders)):
                distributed.barrier()
                t0 = time.perf_counter()
                for _ in range(reps[key]):
                    contenders[key]()
                distributed.barrier()
                samples[key].append((time.perf_counter() - t0) / reps[key])
        times = {key: statistics.median(v) for key, v in samples.items()}
        if ranks > 1:
            times["wait"] = statistics.median(waits)
        rows.append({"name": f"{name} b{batch}/rank x{ranks}", "times": times,
                     "gradient_bytes": int(grads.nbytes), "images_per_s": ranks * batch / times["step"]})
    return rows


def _dist_child(json_path, rounds):
    """The body of the 2-rank job that ``bench_dist`` starts: rank 0 writes the rows."""
    from . import distributed

    distributed.init()
    rows = _dist_rows(rounds)
    if distributed.rank() == 0:
        with open(json_path, "w") as f:
            json.dump(rows, f)


def bench_dist(report, rounds, ranks=2):
    """Data-parallel training of LeNet-5 and ResNet-20 in this process (1 rank, all threads)
    and in a job of ``ranks`` processes on this machine (``mpiexec``; the cores shared out)."""
    import subprocess
    import sys
    import tempfile

    from . import distributed

    rows = _dist_rows(rounds)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        code = f"from cnnkit import bench; bench._dist_child({path!r}, {int(rounds)})"
        try:
            subprocess.run(distributed.launcher_command(ranks) + [sys.executable, "-c", code], check=True,
                           timeout=600)
        except (FileNotFoundError, subprocess.SubprocessError) as e:
            print(f"note: the {ranks}-rank job did not run ({e}); pip install \"cnnkit[dist]\"")
        else:
            with open(path) as f:
                rows += json.load(f)
    for row in rows:
        added = report.add("dist", row["name"], 0, row["times"])
        added.update(gradient_bytes=row["gradient_bytes"], images_per_s=row["images_per_s"])
        print(f"{'':<38}{row['images_per_s']:.0f} images/s, gradients {row['gradient_bytes'] / 2**20:.2f} MiB")


def _summarize_models(report):
    """Per workload (training step or inference at a batch) and peer, the geometric mean ratio
    and the smallest, into ``report.summary["models"]`` and printed."""
    groups = {}
    for r in report.rows:
        if r["suite"] in ("train", "infer") and "ratios" in r:
            workload = f"{r['suite']} {r['name'].rsplit(' ', 1)[1]}"
            for peer, ratio in r["ratios"].items():
                groups.setdefault((workload, peer), []).append((r["name"].rsplit(" ", 1)[0], ratio))
    summary = {}
    for (workload, peer), pairs in groups.items():
        ratios = [v for _, v in pairs]
        geomean = float(np.exp(np.mean(np.log(ratios))))
        worst = min(pairs, key=lambda p: p[1])
        summary.setdefault(workload, {})[peer] = {"geomean_ratio": geomean, "min_ratio": worst[1],
                                                  "min_model": worst[0]}
        print(f"{workload} vs {peer}: geometric mean {geomean:.2f}x, lowest {worst[1]:.2f}x ({worst[0]})")
    if summary:
        report.summary["models"] = summary


def _note_load(report):
    """Record the load average, and warn when more processes want to run than there are cores: a
    library whose worker threads wait for each other at every parallel region then waits for a
    descheduled one (PyTorch's OpenMP workers took 50-600x their time at 2 threads on a 2-core
    machine with a load average of 11)."""
    if not hasattr(os, "getloadavg"):
        return
    load = os.getloadavg()[0]
    report.summary["load_average"] = load
    cores = os.cpu_count() or 1
    if load > cores:
        print(f"note: load average {load:.1f} on {cores} cores: processes wait for a core, so wall times "
              f"are unreliable, multi-threaded peers' most (--clock cpu --threads 1 leaves the waits out)")


SUITES = ("targets", "conv", "gemm", "pool", "ops", "linear", "models", "torch", "dist")


def run(suites=("targets", "gemm", "pool", "ops", "linear", "models"), shapes=None, threads=None, rounds=7,
        use_torch=True, json_path=None, isa=None, models=None, layers_model=None, use_onnx=True, clock="wall"):
    """Run the chosen suites, print a table and return the :class:`Report`.

    ``targets`` runs the issue's target convolution shapes; ``conv`` every bundled
    network's shape file (or ``shapes``: names or paths of shape files). ``models`` runs
    the zoo models named in ``models`` (default :data:`ZOO_MODELS`) and, with
    ``layers_model``, that model's layers one by one. ``clock="cpu"`` times samples in process CPU
    time instead of wall time (one thread only).
    """
    import cnnkit

    for suite in suites:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    if clock not in _CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(_CLOCKS)}, got {clock!r}")
    previous_threads, previous_isa = cnnkit.get_num_threads(), cnnkit.get_max_isa()
    threads = previous_threads if threads is None else threads
    if clock == "cpu" and threads != 1:
        raise ValueError(f"clock='cpu' needs threads=1 (got {threads}): CPU time sums over threads, "
                         "so another thread's spinning at a barrier would count as work")
    if isa is not None:
        cnnkit.set_max_isa(isa)
    cnnkit.set_num_threads(threads)
    blas_limit = None
    try:
        # The peak first, before PyTorch and the BLAS are touched: their idle
        # threads can spin on a core for a while after being set up, and one
        # run measured the 2-thread peak at the 1-thread value that way.
        peak = measure_peak(threads)
        torch = _torch(threads) if use_torch else None
        blas_limit = _limit_blas_threads(threads)
        info = cnnkit.build_info()
        # The ISA the kernels run: the cap, or the CPU's widest where that is narrower.
        isa = min(info["max_isa"], info["detected_isa"], key=cnnkit._ISA_LEVELS.index)
        print(f"cnnkit {info['version']}, ISA {isa}, {threads} threads; "
              f"peer: {'torch ' + torch.__version__ if torch else 'none'}; measured peak {peak:.1f} GFLOP/s")
        report = Report(peak, threads)
        report.summary["clock"] = clock
        _sample_clock[0] = _CLOCKS[clock]
        _note_load(report)
        for suite in suites:
            if suite == "targets":
                bench_conv(report, load_shapes("targets"), torch, rounds)
            elif suite == "conv":
                for f in shapes or [n for n in shape_files() if n != "targets"]:
                    bench_conv(report, load_shapes(f), torch, rounds)
            elif suite == "gemm":
                bench_gemm(report, (256, 512, 1024, 2048), rounds)
            elif suite == "pool":
                bench_pool(report, torch, rounds)
            elif suite == "ops":
                bench_ops(report, torch, rounds)
            elif suite == "linear":
                bench_linear(report, torch, rounds)
            elif suite == "models":
                bench_models(report, torch, rounds, names=models or ZOO_MODELS, threads=threads,
                             use_onnx=use_onnx)
                if layers_model is not None:
                    bench_model_layers(report, torch, rounds, layers_model)
            elif suite == "torch":
                if torch is None:
                    print("note: the torch suite needs PyTorch; skipped")
                else:
                    bench_torch(report, torch, rounds)
            elif suite == "dist":
                bench_dist(report, rounds)
    finally:
        _sample_clock[0] = time.perf_counter
        cnnkit.set_num_threads(previous_threads)
        cnnkit.set_max_isa(previous_isa)
        if blas_limit is not None:
            blas_limit.restore_original_limits()
    report.note_above_peak()
    for suite in ("conv-fwd", "conv-f+b"):
        g = report.geomean_ratio(suite)
        if g is not None:
            print(f"geometric mean ratio torch/cnnkit, {suite}: {g:.2f}x")
    _summarize_models(report)
    if json_path:
        report.to_json(json_path)
        print(f"wrote {json_path}")
    return report
