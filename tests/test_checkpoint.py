"""Resumable training: a run killed mid-epoch and resumed ends with the same bits as one never killed."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnkit
from cnnkit import checkpoint, io, nn, optim, train
from test_train import _blobs

# A run that touches every piece of state a resume must restore: batch norm's running
# statistics, dropout and augmentation (cnnkit's generator), Adam's moments and step
# counts, a schedule, the shuffled order inside an epoch.
WORKER = r"""
import sys, time
import numpy as np
import cnnkit
from cnnkit import data, nn, optim, train

directory, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 480)
x = rng.normal(0, 0.3, (480, 1, 6, 6)).astype(np.float32)
for c in range(3):
    x[y == c, 0, 2 * c : 2 * c + 2, 1:5] += 2.0
cnnkit.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(0.3), nn.Linear(36, 3))
opt = optim.Adam(model.parameters(), lr=1e-2)
sched = optim.StepLR(opt, 1, 0.7)
shift = data.RandomTranslate(1)

def augment(batch):
    time.sleep(delay)  # a slow input pipeline, so that the kill lands inside an epoch
    return shift(batch)

train.fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=16, val=(x[:60], y[:60]),
          scheduler=sched, augment=augment, checkpoint_dir=directory, resume=True, checkpoint_every=3,
          verbose=0)
state = {"model." + k: v for k, v in model.state_dict().items()}
for i, entries in opt.state_dict()["state"].items():
    state.update({f"opt.{i}.{k}": np.asarray(v) for k, v in entries.items()})
np.savez(out, **state)
"""


def _worker(tmp_path, directory, out, delay):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(directory), str(out), str(delay)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process):
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]


def _mid_epoch_checkpoint(directory, process, timeout=120):
    """Poll until a checkpoint taken inside the second or third epoch appears; return its metadata."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        try:
            saved = checkpoint.load(directory)
        except FileNotFoundError:
            saved = None
        if saved is not None and saved["epoch"] >= 1 and saved["batch"] > 0:
            return saved
        time.sleep(0.005)
    raise AssertionError("no mid-epoch checkpoint appeared")


def test_run_killed_mid_epoch_resumes_to_the_same_bits(tmp_path):
    reference = _worker(tmp_path, tmp_path / "reference", tmp_path / "reference.npz", 0)
    _finish(reference)

    directory = tmp_path / "killed"
    victim = _worker(tmp_path, directory, tmp_path / "killed.npz", 0.02)
    _mid_epoch_checkpoint(directory, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.npz").exists()
    at_kill = checkpoint.load(directory)
    assert at_kill["epoch"] in (1, 2) and 0 < at_kill["batch"] < 30 and at_kill["order"] is not None

    _finish(_worker(tmp_path, directory, tmp_path / "resumed.npz", 0))
    expected, got = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(expected.files) == sorted(got.files)
    assert any(k.startswith("opt.") and k.endswith("exp_avg") for k in got.files)
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def _setup(momentum=0.9):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(144, 3))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    return model, opt, optim.StepLR(opt, 2, 0.5)


def _fit(directory, epochs, generator=None, **kwargs):
    model, opt, sched = _setup()
    history = train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(96), epochs, 16, scheduler=sched, verbose=0,
                        checkpoint_dir=directory, generator=generator, **kwargs)
    return model, opt, sched, history


def test_resume_between_epochs_continues_the_history_schedule_and_generator(tmp_path):
    cnnkit.manual_seed(3)
    model, opt, sched, history = _fit(tmp_path / "a", 4, generator=np.random.default_rng(5))
    cnnkit.manual_seed(3)
    _fit(tmp_path / "b", 2, generator=np.random.default_rng(5))
    cnnkit.manual_seed(99)  # resume must put every generator back
    resumed, ropt, rsched, rhistory = _fit(tmp_path / "b", 4, generator=np.random.default_rng(7), resume=True)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value)
    assert rhistory["loss"] == history["loss"] and rhistory.epochs == 4
    assert rhistory["lr"] == history["lr"] == [0.05, 0.05, 0.025, 0.025]
    assert rsched.last_epoch == sched.last_epoch == 4
    assert ropt.state_dict()["param_groups"][0]["lr"] == 0.0125


def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_does_nothing(tmp_path):
    cnnkit.manual_seed(0)
    fresh, _, _, history = _fit(tmp_path / "run", 2, resume=True)
    assert history.epochs == 2 and os.path.exists(checkpoint.path_in(tmp_path / "run"))
    again, _, _, same = _fit(tmp_path / "run", 2, resume=True)
    assert same["loss"] == history["loss"]
    for key, value in fresh.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value)


def test_a_run_stopped_by_a_callback_stays_stopped(tmp_path):
    cnnkit.manual_seed(0)
    _, _, _, history = _fit(tmp_path, 5, callbacks=[lambda epoch, logs, m: epoch == 1])
    assert history.epochs == 2
    _, _, _, resumed = _fit(tmp_path, 5, resume=True)
    assert resumed.epochs == 2


def test_checkpoint_holds_model_optimizer_scheduler_and_info(tmp_path):
    cnnkit.manual_seed(0)
    model, opt, sched, _ = _fit(tmp_path, 2, checkpoint_info={"normalize": {"mean": [0.1], "std": [0.3]}})
    saved = checkpoint.load(tmp_path)
    assert saved["epoch"] == 2 and saved["batch"] == 0 and saved["order"] is None
    assert saved["info"] == {"normalize": {"mean": [0.1], "std": [0.3]}}
    assert saved["scheduler"]["last_epoch"] == 2
    momentum = saved["optimizer"]["state"][0]["momentum_buffer"]
    np.testing.assert_array_equal(momentum, opt.state_dict()["state"][0]["momentum_buffer"])
    np.testing.assert_array_equal(saved["model"]["0.weight"], model.state_dict()["0.weight"])


def test_bad_checkpoints_and_arguments_are_refused(tmp_path):
    model, opt, _ = _setup()
    io.save(model, checkpoint.path_in(tmp_path))  # weights, not a checkpoint
    with pytest.raises(ValueError, match="not a cnnkit training checkpoint"):
        checkpoint.load(tmp_path)
    with open(checkpoint.path_in(tmp_path), "wb") as f:
        f.write(b"\x10\x00")
    with pytest.raises(ValueError, match="checkpoint.safetensors"):
        checkpoint.load(tmp_path)
    for meta in ({"format": 1}, {"format": 1, "optimizer": {"scalars": [], "param_groups": []}}, {"format": 0}):
        io.save_state_dict({}, checkpoint.path_in(tmp_path), metadata={"cnnkit.checkpoint": json.dumps(meta)})
        with pytest.raises(ValueError, match="checkpoint.safetensors: (a damaged cnnkit checkpoint|checkpoint format 0)"):
            checkpoint.load(tmp_path)
    with pytest.raises(ValueError, match="need a checkpoint_dir"):
        train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(96), 1, 16, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(96), 1, 16, checkpoint_dir=tmp_path, checkpoint_every=0)
    checkpoint.save(tmp_path / "run", model, opt, epoch=0, batch=2, order=np.arange(50), sums=(0.0, 0, 0))
    with pytest.raises(ValueError, match="taken on 50 training samples, this call has 96"):
        _fit(tmp_path / "run", 1, resume=True)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, _ = _setup()
    checkpoint.save(tmp_path, model, opt, epoch=1)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, model, opt, epoch=2)
    monkeypatch.undo()
    assert checkpoint.load(tmp_path)["epoch"] == 1
    assert os.listdir(tmp_path) == [checkpoint.FILE]
