"""Compare two builds of cnnkit's native module on one convolution, in one process.

    python benchmarks/ab.py OLD/_C.so NEW/_C.so lenet_c2 [fwd|dx|dw|bwd] [--threads 2] [--rounds 15]

On a shared machine the same build's times drift by tens of percent from one
minute to the next, so two separate runs cannot show a change of a few percent.
Here both builds are loaded side by side (an extension module's init symbol
depends only on the last part of its name, so "A._C" and "B._C" both load) and
timed in interleaved rounds by the harness's own `interleaved`; the ratio of the
medians is what to read. Shapes are the names in cnnkit/shapes/targets.txt, or
FILE:NAME for the layer NAME of another shape file (e.g. resnet:layer3_3x3).
"""

import argparse
import importlib.util

import numpy as np
from cnnkit import bench


def load_build(path, name):
    spec = importlib.util.spec_from_file_location(f"{name}._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("shape")
    parser.add_argument("what", nargs="?", default="fwd", choices=("fwd", "dx", "dw", "bwd"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--isa", choices=("scalar", "avx2", "avx512"), help="cap both builds' ISA")
    args = parser.parse_args()
    builds = {"old": load_build(args.old, "old"), "new": load_build(args.new, "new")}
    shapes = {s.name: s for s in bench.load_shapes("targets")}
    for file in bench.shape_files():
        shapes.update({f"{file}:{s.name}": s for s in bench.load_shapes(file)})
    if args.shape not in shapes:
        parser.error(f"shape must be one of {', '.join(shapes)}")
    s = shapes[args.shape]
    x, w, b = bench._conv_inputs(s, np.random.default_rng(0))
    conv = ((s.stride,) * 2, (s.pad,) * 4, (s.dilation,) * 2, s.groups)
    dy = np.random.default_rng(1).standard_normal(builds["old"].conv2d(x, w, b, *conv, "auto").shape)
    dy = dy.astype(np.float32)
    flags = {"dx": (True, False, False), "dw": (False, True, False), "bwd": (True, True, True)}

    def call(module):
        module.set_num_threads(args.threads)
        if args.isa:
            module.set_max_isa(args.isa)
        if args.what == "fwd":
            return lambda: module.conv2d(x, w, b, *conv, "auto")
        return lambda: module.conv2d_backward(dy, x, w, *conv, *flags[args.what], "auto")

    times = bench.interleaved({name: call(m) for name, m in builds.items()}, rounds=args.rounds,
                              min_time=0.03, settle_time=0.03)
    print(f"{args.shape} {args.what}, {args.threads} threads: old {times['old'] * 1e6:.1f} us, "
          f"new {times['new'] * 1e6:.1f} us, old/new {times['old'] / times['new']:.3f}")


if __name__ == "__main__":
    main()
