"""Where a zoo model's training step (batch 64) spends its time, and the layers' overhead cuts
before and after, in one process.

    python benchmarks/step_overhead.py lenet5 mnist_cnn resnet20 [--threads 1] [--rounds 5] [--json FILE]

For each model: one cProfile'd run of a few steps splits the step into native kernel calls
(``cnnkit._C``), the optimizer's update, and everything else (NumPy work and the Python of the
layers and the loop); then three contenders in interleaved rounds (the harness's own
``interleaved``): ``before``, the step with the layers' overhead cuts switched back to what they
replaced; ``after``, the step as it is; ``torch``, the weight-identical PyTorch twin's step.
The cut switched here: layers adopt the fresh weight gradient their backward op returns instead
of copying it into ``param.grad`` (the public ``accumulate_grad`` still copies).
"""

import argparse
import cProfile
import contextlib
import json
import platform
import pstats

import numpy as np

import cnnkit
from cnnkit import bench, nn, optim
from cnnkit._twins import torch_twin
from cnnkit.nn.module import Parameter


@contextlib.contextmanager
def cuts_reverted():
    adopt = Parameter._accumulate_result
    Parameter._accumulate_result = Parameter.accumulate_grad
    try:
        yield
    finally:
        Parameter._accumulate_result = adopt


def make_step(name, batch, torch):
    model = bench._zoo_model(name).train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *bench._MODEL_INPUTS[name])).astype(np.float32)
    y = rng.integers(0, 10, batch)
    crit, opt = nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        crit(model(x), y)
        opt.zero_grad()
        model.backward(crit.backward(), input_grad=False)
        opt.step()

    twin = torch_twin(torch, model).train()
    topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(twin(xt), yt).backward()
        topt.step()

    return step, torch_step


def split(step, steps):
    """Seconds per step in native kernels, in the optimizer's update and in the rest."""
    step()
    profile = cProfile.Profile(bench._sample_clock[0])
    profile.enable()
    for _ in range(steps):
        step()
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    kernels = sum(tt for (_, _, fn), (_, _, tt, _, _) in stats.items() if fn.startswith("<built-in method cnnkit._C."))
    update = sum(ct for (path, _, fn), (_, _, _, ct, _) in stats.items()
                 if fn == "step" and path.endswith("optimizer.py"))
    return {"kernels": kernels / steps, "optimizer": update / steps, "other": (total - kernels - update) / steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=bench.ZOO_MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (use with --threads 1), as `cnnkit bench --clock cpu`")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    bench._sample_clock[0] = bench._CLOCKS[args.clock]
    import torch

    cnnkit.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        step, torch_step = make_step(name, args.batch, torch)
        parts = split(step, args.profile_steps)

        def before():
            with cuts_reverted():
                step()

        times = bench.interleaved({"before": before, "after": step, "torch": torch_step}, rounds=args.rounds)
        row = {"model": name, "batch": args.batch, "seconds": times, "profile_seconds": parts,
               "after_over_before": times["before"] / times["after"],
               "torch_over_after": times["torch"] / times["after"],
               "torch_over_before": times["torch"] / times["before"]}
        rows.append(row)
        share = {k: f"{100 * v / sum(parts.values()):.0f}%" for k, v in parts.items()}
        print(f"{name} b{args.batch}: before {times['before'] * 1e3:.1f} ms, after {times['after'] * 1e3:.1f} ms "
              f"({row['after_over_before']:.3f}x), torch {times['torch'] * 1e3:.1f} ms "
              f"(torch/after {row['torch_over_after']:.2f}x); profiled step: {share}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.machine(), "threads": args.threads, "clock": args.clock,
                       "rounds": args.rounds, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
