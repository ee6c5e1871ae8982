"""Per-op times of a zoo model's inference plan (``plan.profile``), fastest of many calls.

    PYTHONPATH=python python benchmarks/plan_profile.py resnet20 [--batch 1] [--threads 2] [--calls 200]

Each op's time is the minimum over ``calls`` profiled calls: on a machine that other processes
keep busy, the minimum is the run least disturbed by them. Prints one line per op (its time, the
way each convolution runs, what it fused) and the sum.
"""

import argparse

import numpy as np

import cnnkit
from plan_inference import MODELS, randomize_batch_norm


def profile(name, batch, calls, seed=0):
    """[(op description, fastest seconds)] of the plan of zoo model ``name`` at ``batch``."""
    build, input_shape = MODELS[name]
    rng = np.random.default_rng(seed)
    model = build()
    randomize_batch_norm(model, rng)
    plan = model.eval().compile_inference(input_shape)
    x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
    try:
        for _ in range(10):
            plan(x)
        best = None
        for _ in range(calls):
            seconds = np.array([t for _, t in plan.profile(x)])
            best = seconds if best is None else np.minimum(best, seconds)
        return list(zip(plan.describe().splitlines(), best))
    finally:
        plan.release()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    cnnkit.set_num_threads(args.threads)
    rows = profile(args.model, args.batch, args.calls)
    for op, seconds in rows:
        print(f"{seconds * 1e6:8.1f} us  {op}")
    print(f"{sum(s for _, s in rows) * 1e6:8.1f} us  sum")


if __name__ == "__main__":
    main()
