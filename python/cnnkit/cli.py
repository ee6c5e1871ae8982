"""The ``cnnkit`` command (also ``python -m cnnkit``): train, evaluate, info."""

import argparse
import json
import os
import sys
import time

from . import _ISA_LEVELS

__all__ = ["main", "build_parser"]

MODELS = ("lenet5", "mnist_cnn", "alexnet", "vgg", "resnet", "inception", "densenet")
DATASETS = ("mnist", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


def _build_model(name, in_channels, image_size):
    from . import models

    if name == "lenet5":
        return models.lenet5(in_channels=in_channels)
    if name == "mnist_cnn":
        return models.mnist_cnn(in_channels=in_channels)
    if name == "alexnet":
        return models.alexnet(in_channels=in_channels, width=16, image_size=image_size)
    if name == "vgg":
        return models.vgg("vgg11", in_channels=in_channels, width_divisor=4)
    if name == "inception":
        return models.inception(in_channels=in_channels)
    if name == "densenet":
        return models.densenet(in_channels=in_channels)
    return models.resnet(20, in_channels=in_channels)


def _load_dataset(name, path):
    """(train, test, description) as ((x, y), (x, y), str)."""
    from . import data

    if name == "cifar10":
        if path is None:
            raise SystemExit("cnnkit: CIFAR-10 needs --data PATH (the folder with the python batches)")
        return data.load_cifar10(path, "train"), data.load_cifar10(path, "test"), f"CIFAR-10 at {path}"
    if path is not None:
        return data.load_mnist(path, "train"), data.load_mnist(path, "test"), f"MNIST at {path}"
    train, test = data.load_mnist_digits("train"), data.load_mnist_digits("test")
    return train, test, "the 5,000 MNIST digits shipped with cnnkit (4,000 train / 1,000 held out)"


def _make_optimizer(name, params, lr, momentum, weight_decay):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = {"adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop, "adagrad": optim.Adagrad}[name]
    return cls(params, lr=lr, weight_decay=weight_decay)


def _augmentation(kind, image_size):
    """Random transforms drawing from cnnkit's seeded generator."""
    from . import data

    if kind == "none":
        return None
    if kind == "digits":
        return data.Compose([data.RandomTranslate(2), data.RandomRotation(10)])
    return data.Compose([data.RandomCrop(image_size, padding=4), data.RandomHorizontalFlip()])


def _resumed(args):
    """The arguments and normalisation a killed ``cnnkit train`` run stored in its checkpoint."""
    from . import checkpoint

    try:
        info = checkpoint.load(args.resume)["info"]
    except (OSError, ValueError) as e:
        raise SystemExit(f"cnnkit: cannot resume from {args.resume}: {e}") from None
    if not isinstance(info, dict) or "args" not in info or "normalize" not in info:
        raise SystemExit(f"cnnkit: the checkpoint in {args.resume} was not written by cnnkit train")
    stored = argparse.Namespace(**info["args"])
    stored.resume, stored.out, stored.quiet, stored.func = args.resume, args.resume, args.quiet, args.func
    return stored, info["normalize"]


def cmd_train(args):
    import cnnkit

    from . import data, distributed, nn, train, viz

    distributed.init()
    stats = None
    if args.resume:
        args, stats = _resumed(args)
    cnnkit.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test), description = _load_dataset(args.dataset, args.data)
    normalize = data.Normalize(stats["mean"], stats["std"]) if stats else data.Normalize.from_data(x_train)
    x_train, x_test = normalize(x_train), normalize(x_test)
    model = _build_model(args.model, x_train.shape[1], x_train.shape[2])
    # Under mpiexec every rank trains its shard; rank 0 alone prints and writes the outputs.
    if args.sync_batchnorm:
        model = distributed.SyncBatchNorm.convert_sync_batchnorm(model)
    device = getattr(args, "device", "cpu")  # checkpoints of runs before --device existed have none
    if device != "cpu":
        try:
            model.to(device)
        except (RuntimeError, ValueError) as e:
            raise SystemExit(f"cnnkit: --device {device}: {e}") from None
    net = distributed.DistributedDataParallel(model) if distributed.world_size() > 1 else model
    criterion = nn.CrossEntropyLoss()
    optimizer = _make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum, args.weight_decay)
    scheduler = None
    if args.lr_step:
        from .optim import StepLR

        scheduler = StepLR(optimizer, step_size=args.lr_step, gamma=args.lr_gamma)
    augment = _augmentation(args.augment, x_train.shape[2])
    if distributed.rank() == 0:
        print(f"training {args.model} on {description}: {len(x_train)} train / {len(x_test)} test images"
              + (f" on {distributed.world_size()} processes" if distributed.world_size() > 1 else "")
              + (f" on {device}" if device != "cpu" else ""))
        if args.resume:
            print(f"resuming from the checkpoint in {args.resume}")
    start = time.perf_counter()
    stored = {k: v for k, v in vars(args).items() if k not in ("func", "resume", "quiet")}
    normalisation = {"mean": normalize.mean.tolist(), "std": normalize.std.tolist()}
    history = train.fit(net, criterion, optimizer, (x_train, y_train), args.epochs, args.batch_size,
                        val=(x_test, y_test), scheduler=scheduler, augment=augment,
                        verbose=0 if args.quiet else 1, checkpoint_dir=args.out, resume=bool(args.resume),
                        checkpoint_every=args.checkpoint_every or None,
                        checkpoint_info={"args": stored, "normalize": normalisation})
    elapsed = time.perf_counter() - start
    test_loss, test_acc = train.evaluate(net, criterion, (x_test, y_test))
    images_per_s = len(x_train) * history.epochs / max(elapsed, 1e-9)
    if distributed.rank() != 0:
        return 0
    model.cpu()  # the weights file and the plots read host arrays
    os.makedirs(args.out, exist_ok=True)
    cnnkit.save(model, os.path.join(args.out, "weights.safetensors"))
    history.save_json(os.path.join(args.out, "history.json"))
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump({"model": args.model, "dataset": description, "epochs": history.epochs,
                   "test_loss": test_loss, "test_accuracy": test_acc,
                   "train_images_per_s": images_per_s, "normalize": normalisation,
                   "args": {k: v for k, v in vars(args).items() if k != "func"}}, f, indent=2)
    plots = []
    try:
        viz.plot_history(history.to_dict(), os.path.join(args.out, "history.png"))
        plots.append("history.png")
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        viz.plot_kernels(first_conv.weight.data, os.path.join(args.out, "kernels.png"))
        plots.append("kernels.png")
        model.eval()
        viz.plot_feature_maps(first_conv(x_test[:1])[0], os.path.join(args.out, "feature_maps.png"))
        plots.append("feature_maps.png")
    except ImportError as e:
        print(f"plots skipped: {e}")
    print(f"test accuracy {test_acc:.4f} (loss {test_loss:.4f}); {images_per_s:.0f} images/s training")
    print(f"wrote {args.out}/weights.safetensors, history.json, run.json" +
          "".join(", " + p for p in plots))
    return 0


def cmd_evaluate(args):
    import cnnkit

    from . import data, nn, train

    # A training run leaves run.json beside its weights: it names the model and
    # the normalisation the weights expect.
    run_file = os.path.join(os.path.dirname(os.path.abspath(args.weights)), "run.json")
    run = {}
    if os.path.exists(run_file):
        with open(run_file) as f:
            run = json.load(f)
    model_name = args.model or run.get("model", "lenet5")
    stats = run.get("normalize")
    normalize = data.Normalize(stats["mean"], stats["std"]) if stats else None
    _, (x_test, y_test), description = _load_dataset(args.dataset, args.data)
    if normalize is not None:
        x_test = normalize(x_test)
    model = _build_model(model_name, x_test.shape[1], x_test.shape[2])
    try:
        cnnkit.load(args.weights, model)
    except (OSError, RuntimeError, ValueError) as e:
        raise SystemExit(f"cnnkit: cannot load {args.weights} into {model_name}: {e}") from None
    loss, acc = train.evaluate(model, nn.CrossEntropyLoss(), (x_test, y_test))
    print(f"{model_name} on {description}: test accuracy {acc:.4f} (loss {loss:.4f}), {len(x_test)} images")
    return 0


def cmd_info(args):
    import cnnkit

    info = cnnkit.build_info()
    print(f"cnnkit {info['version']}")
    print(f"compiled ISAs: {', '.join(info['compiled_isas'])}; CPU supports up to {info['detected_isa']}; "
          f"cap {info['max_isa']}")
    print("selected kernels:")
    for op, kernel in info["kernels"].items():
        print(f"  {op:<28} {kernel}")
    print(f"threads: {info['num_threads']} (cnnkit.set_num_threads or OMP_NUM_THREADS)")
    tune = info["autotune"]
    state = "on" if tune["enabled"] else "off (CNNKIT_AUTOTUNE=0, cnnkit.autotune.set_enabled or deterministic mode)"
    print(f"conv autotune: {state}; cache {tune['cache_file'] or 'none (no cache folder)'}, "
          f"{tune['entries']} choices for {tune['signature']}")
    _print_cuda(info["cuda"])
    return 0


def _print_cuda(cuda):
    if not cuda["built"]:
        print(f"CUDA: not built ({cuda['reason']})")
        return
    print(f"CUDA: built for {' '.join(cuda['architectures'])} with runtime {cuda['runtime_version']}; "
          f"driver {cuda['driver_version']}")
    for i, d in enumerate(cuda["devices"]):
        major, minor = d["compute_capability"]
        print(f"  cuda:{i} {d['name']}, sm_{major}{minor}, {d['multiprocessors']} SMs, "
              f"{d['total_memory'] / 2**30:.1f} GiB")
    if not cuda["available"]:
        print(f"  no usable device: {cuda['reason']}")
    print(f"  ops with CUDA kernels ({len(cuda['ops'])}): {', '.join(cuda['ops']) or 'none'}")


_DEFAULT_BENCH_SUITES = ("targets", "gemm", "pool", "ops", "linear", "models")


def cmd_bench(args):
    from . import bench

    if args.device == "cuda":
        from . import bench_cuda

        try:
            bench_cuda.run(args.suite or bench_cuda.SUITES, rounds=args.rounds, json_path=args.json)
        except (RuntimeError, ValueError) as e:
            raise SystemExit(f"cnnkit bench --device cuda: {e}") from None
        return 0
    # --models and --model choose what the models suite runs, so they ask for it: alone they run
    # only it, beside named suites they add it.
    wants_models = args.model is not None or args.models is not None
    if args.suite:
        suites = list(args.suite) + (["models"] if wants_models and "models" not in args.suite else [])
    else:
        suites = ["models"] if wants_models else list(_DEFAULT_BENCH_SUITES)
    bench.run(suites, shapes=args.shapes, threads=args.threads, rounds=args.rounds,
              use_torch=not args.no_torch, json_path=args.json, isa=args.isa, models=args.models,
              layers_model=args.model, use_onnx=not args.no_onnx, clock=args.clock)
    return 0


def build_parser():
    from . import __version__, bench

    p = argparse.ArgumentParser(prog="cnnkit", description="Train and evaluate CNNs with cnnkit.")
    p.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save weights, history and plots")
    t.add_argument("--model", choices=MODELS, default="lenet5")
    t.add_argument("--dataset", choices=DATASETS, default="mnist")
    t.add_argument("--data", default=None, help="folder with the dataset files (default for mnist: "
                   "the 5,000 digits shipped with cnnkit)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--lr-step", type=int, default=12, help="multiply the lr by --lr-gamma every N epochs (0: never)")
    t.add_argument("--lr-gamma", type=float, default=0.1)
    t.add_argument("--augment", choices=("none", "digits", "images"), default="digits",
                   help="digits: shifts of up to 2 px and rotations up to 10 degrees; images: crop + flip")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sync-batchnorm", action="store_true",
                   help="under mpiexec, batch norm statistics over all processes' batches")
    t.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (CUDA: CuPy arrays, else PyTorch CUDA tensors)")
    t.add_argument("--out", default="cnnkit-run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--checkpoint-every", type=int, default=50,
                   help="also checkpoint into --out every N batches inside an epoch (0: at epoch ends only)")
    t.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run whose --out was DIR, with its arguments (others are ignored)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a weights file on a dataset's test split")
    e.add_argument("weights")
    e.add_argument("--model", choices=MODELS, default=None,
                   help="default: the model named in run.json beside the weights, else lenet5")
    e.add_argument("--dataset", choices=DATASETS, default="mnist")
    e.add_argument("--data", default=None)
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="benchmark kernels and models against NumPy and PyTorch")
    b.add_argument("suite", nargs="*", default=[],
                   help="targets, conv, gemm, pool, ops, linear, models, torch, dist "
                        "(default: all but conv, torch and dist); with --device cuda: gemm, targets, ops, "
                        "models (default: all)")
    b.add_argument("--shapes", nargs="*", default=None, help="shape files (names or paths) for the conv suite")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--isa", choices=_ISA_LEVELS, default=None, help="cap cnnkit's ISA")
    b.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    b.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch (nor ONNX Runtime, "
                   "which runs the PyTorch twin's export)")
    b.add_argument("--no-onnx", action="store_true", help="do not compare with ONNX Runtime")
    b.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time samples in wall time, or in process CPU time (with --threads 1 only): "
                        "on a machine other processes keep busy, CPU time leaves out the waits for a core")
    b.add_argument("--models", nargs="+", choices=bench.ZOO_MODELS, default=None,
                   help="the zoo models of the models suite (default: all)")
    b.add_argument("--model", choices=bench.ZOO_MODELS, default=None,
                   help="also time this model's layers one by one (forward + backward, %% of the peak)")
    b.add_argument("--json", default=None, help="also write the results to this JSON file")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the CUDA kernels and training steps against PyTorch CUDA (TF32 off)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="version, compiled and selected kernels, threads, CUDA")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`cnnkit info | head`). Python flushes stdout again on its way
        # out and would print a second traceback there: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
