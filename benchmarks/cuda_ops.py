"""GPU bandwidth of cnnkit's CUDA pooling, batch-norm, activation and softmax/cross-entropy kernels
beside PyTorch CUDA on the same card (issue 13's target: >= 90% of the measured device-to-device
copy bandwidth).

    python benchmarks/cuda_ops.py OUT_DIR        # needs a CUDA device and PyTorch

Each workload moves a known number of bytes at the least (each input read once, each output
written once); its bandwidth is that over the median time of a call, measured with CUDA events,
and `fraction_of_copy` compares it with a plain device-to-device copy of as many bytes. Contenders
run side by side in interleaved rounds, each warmed up untimed (~0.1 s) before its sample. Writes
OUT_DIR/cuda_ops.json and prints a table.
"""

import json
import pathlib
import statistics
import sys
import time


def timed(torch, fn, calls):
    """Milliseconds per call over `calls` back-to-back calls, by CUDA events."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / calls


def warm(torch, fn):
    end = time.perf_counter() + 0.1
    while time.perf_counter() < end:
        fn()
    torch.cuda.synchronize()


def workloads(torch, F, ops):
    """(name, bytes moved at the least, cnnkit call, torch call)."""
    x = torch.randn(64, 64, 56, 56, device="cuda")
    big = torch.randn(64, 64, 112, 112, device="cuda")
    logits = torch.randn(4096, 1000, device="cuda")
    labels = torch.randint(0, 1000, (4096,), device="cuda")
    trainable = logits.clone().requires_grad_()
    w, b = torch.randn(64, device="cuda"), torch.randn(64, device="cuda")
    rm, rv = torch.zeros(64, device="cuda"), torch.ones(64, device="cuda")
    n = x.numel() * 4
    pooled = big.numel() // 4 * 4
    return [
        ("copy", 2 * n, lambda: x.clone(), lambda: x.clone()),
        ("relu", 2 * n, lambda: ops["act"].relu(x), lambda: F.relu(x)),
        ("relu_backward", 3 * n, lambda: ops["act"].relu_backward(x, x),
         lambda: torch.ops.aten.threshold_backward(x, x, 0)),
        ("gelu", 2 * n, lambda: ops["act"].gelu(x), lambda: F.gelu(x)),
        ("max_pool2d 3x3/2", big.numel() * 4 + pooled, lambda: ops["pool"].max_pool2d(big, 3, 2, 1),
         lambda: F.max_pool2d(big, 3, 2, 1)),
        ("batch_norm train", 2 * n, lambda: ops["norm"].batch_norm(x, rm, rv, w, b, True),
         lambda: F.batch_norm(x, rm, rv, w, b, True)),
        ("batch_norm eval", 2 * n, lambda: ops["norm"].batch_norm(x, rm, rv, w, b),
         lambda: F.batch_norm(x, rm, rv, w, b)),
        ("softmax 4096x1000", 2 * logits.numel() * 4, lambda: ops["loss"].softmax(logits, -1),
         lambda: F.softmax(logits, -1)),
        ("cross_entropy fwd+bwd", 2 * logits.numel() * 4,
         lambda: (ops["loss"].cross_entropy(logits, labels), ops["loss"].cross_entropy_backward(logits, labels)),
         lambda: torch.autograd.grad(F.cross_entropy(trainable, labels), trainable)),
    ]


def main(argv):
    if len(argv) != 1:
        print(__doc__)
        return 2
    import torch

    import cnnkit.cuda
    from cnnkit.cuda import ops_act, ops_loss, ops_norm, ops_pool

    if not cnnkit.cuda.is_available():
        print(f"no CUDA device: {cnnkit.cuda.unavailable_reason()}")
        return 1
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    F = torch.nn.functional
    ops = {"act": ops_act, "loss": ops_loss, "norm": ops_norm, "pool": ops_pool}
    results = {}
    table = workloads(torch, F, ops)
    for name, _, ours, theirs in table:
        for fn in (ours, theirs):
            warm(torch, fn)
        samples = {"cnnkit": [], "torch": []}
        for _ in range(7):
            for who, fn in (("cnnkit", ours), ("torch", theirs)):
                samples[who].append(timed(torch, fn, 20))
        results[name] = {who: statistics.median(s) for who, s in samples.items()}
    copy_ms = results["copy"]["cnnkit"]
    copy_bytes = table[0][1]
    report = {"device": torch.cuda.get_device_name(), "workloads": {}}
    print(f"{'workload':24} {'cnnkit ms':>10} {'torch ms':>10} {'GB/s':>8} {'of copy':>8} {'torch/cnnkit':>12}")
    for name, nbytes, _, _ in table:
        ms = results[name]
        gbps = nbytes / ms["cnnkit"] / 1e6
        fraction = gbps / (copy_bytes / copy_ms / 1e6)
        report["workloads"][name] = dict(bytes=nbytes, cnnkit_ms=ms["cnnkit"], torch_ms=ms["torch"], cnnkit_gbps=gbps,
                                         fraction_of_copy=fraction, torch_over_cnnkit=ms["torch"] / ms["cnnkit"])
        print(f"{name:24} {ms['cnnkit']:10.4f} {ms['torch']:10.4f} {gbps:8.1f} {fraction:8.2f} "
              f"{ms['torch'] / ms['cnnkit']:12.2f}")
    out = pathlib.Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_ops.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
