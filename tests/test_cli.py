"""The cnnkit command: info, train (on real-format IDX files and on the shipped digits), evaluate."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cnnkit import cli
from test_data import mnist_dir


def _digits_like(n, seed):
    """A bright 4x4 block on a label-dependent cell of a 3x4 grid whose cells are 7-8 pixels apart,
    so the digit augmentation's 2-pixel shifts keep the classes apart; MNIST-format uint8."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        top, left = 2 + 8 * (y // 4), 2 + 7 * (y % 4)
        images[i, top : top + 4, left : left + 4] = 255
    return images, labels


@pytest.fixture
def mnist_path(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n, seed in (("train", 600, 0), ("t10k", 200, 1)):
        images, labels = _digits_like(n, seed)
        mnist_dir(folder, prefix=prefix, gz=prefix == "train", images=images, labels=labels)
    return folder


def test_info_reports_kernels_threads_and_cuda(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiled ISAs: scalar" in out and "threads:" in out and "CUDA:" in out


def _installed_command():
    """The path of the installed `cnnkit` script, as a user's shell would find it after `pip install .`."""
    try:
        dist = importlib.metadata.distribution("cnnkit")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("cnnkit is imported from a source tree, not installed")
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts" and ep.name == "cnnkit"]
    assert [ep.value for ep in scripts] == ["cnnkit.cli:main"], "pyproject.toml must declare the cnnkit command"
    # pip puts console scripts beside the interpreter it installed into.
    path = shutil.which("cnnkit", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert path is not None, "the cnnkit command is declared but not installed on PATH"
    return path


def test_installed_cnnkit_command_runs_help_and_info():
    command = _installed_command()
    help_text = subprocess.run([command, "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in help_text and "bench" in help_text
    info = subprocess.run([command, "info"], capture_output=True, text=True, check=True).stdout
    assert info.startswith("cnnkit ") and "compiled ISAs: scalar" in info


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "cnnkit", "info"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("cnnkit ")


def test_train_then_evaluate_on_idx_files(mnist_path, tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = ["train", "--data", str(mnist_path), "--epochs", "3", "--batch-size", "20", "--lr", "0.05",
            "--out", str(out_dir), "--quiet", "--augment", "digits"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "images/s" in printed
    run = json.loads((out_dir / "run.json").read_text())
    assert run["test_accuracy"] > 0.9 and run["epochs"] == 3
    history = json.loads((out_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["val_accuracy"]) == 3
    assert os.path.getsize(out_dir / "weights.safetensors") > 61706 * 4
    pytest.importorskip("matplotlib")
    for png in ("history.png", "kernels.png", "feature_maps.png"):
        assert (out_dir / png).read_bytes()[:4] == b"\x89PNG"

    assert cli.main(["evaluate", str(out_dir / "weights.safetensors"), "--data", str(mnist_path)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("lenet5 on") and f"test accuracy {run['test_accuracy']:.4f}" in line
    with pytest.raises(SystemExit, match="(?s)cannot load .* into mnist_cnn: .*size mismatch"):
        cli.main(["evaluate", str(out_dir / "weights.safetensors"), "--data", str(mnist_path), "--model", "mnist_cnn"])


def test_train_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "nope"])
    with pytest.raises(SystemExit, match="CIFAR-10 needs --data"):
        cli.main(["train", "--dataset", "cifar10"])
