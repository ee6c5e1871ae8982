"""The cnnkit command: info, train (on real-format IDX files and on the shipped digits), evaluate."""

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time

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


# `cnnkit info | head -1`: the reader is gone before the command has printed everything. Here
# it is gone from the start, so every write fails: one exit status, no traceback.
def test_a_closed_pipe_on_stdout_ends_without_a_traceback():
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "cnnkit", "info"], stdout=write, stderr=subprocess.PIPE,
                                text=True)
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == ""


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


def test_train_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    """A real ``cnnkit train`` killed with SIGKILL inside an epoch, then ``cnnkit train --resume``."""
    from cnnkit import checkpoint, io

    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n, seed in (("train", 3000, 0), ("t10k", 100, 1)):
        images, labels = _digits_like(n, seed)
        mnist_dir(folder, prefix=prefix, images=images, labels=labels)

    def command(*args):
        return [sys.executable, "-m", "cnnkit", "train", *args, "--quiet"]

    def start(out):
        return command("--data", str(folder), "--epochs", "2", "--batch-size", "20", "--checkpoint-every", "5",
                       "--out", str(out))

    subprocess.run(start(tmp_path / "whole"), check=True, capture_output=True)
    victim = subprocess.Popen(start(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:  # wait for a checkpoint early in an epoch (150 batches), then kill
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()[1].decode()[-2000:]
        try:
            if 0 < checkpoint.load(tmp_path / "killed")["batch"] <= 60:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL and checkpoint.load(tmp_path / "killed")["batch"] > 0
    assert not (tmp_path / "killed" / "weights.safetensors").exists()

    resumed = subprocess.run(command("--resume", str(tmp_path / "killed")), check=True, capture_output=True, text=True)
    assert "resuming from the checkpoint" in resumed.stdout
    whole = io.load(str(tmp_path / "whole" / "weights.safetensors"))
    again = io.load(str(tmp_path / "killed" / "weights.safetensors"))
    assert whole.keys() == again.keys()
    for key in whole:
        np.testing.assert_array_equal(again[key], whole[key], err_msg=key)
    history = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("whole", "killed")]
    assert history[0]["loss"] == history[1]["loss"] and len(history[1]["loss"]) == 2


def test_resume_refuses_a_folder_without_a_train_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="cannot resume from .*No such file"):
        cli.main(["train", "--resume", str(tmp_path)])
