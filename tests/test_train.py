"""fit / evaluate / predict on small synthetic problems, and LeNet-5 on real digits."""

import numpy as np
import pytest

import cnnkit
import torch_twins
from cnnkit import data, nn, optim, train


def _blobs(n=240, seed=0):
    """Three well-separated classes of 1x6x6 images (a bright square in different places)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 6, 6)).astype(np.float32)
    for c in range(3):
        x[y == c, 0, 2 * c : 2 * c + 2, 1:5] += 2.0
    return x, y


def _small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3))


def test_fit_learns_and_records_history():
    cnnkit.manual_seed(0)
    model = _small_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    data = _blobs()
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, data, epochs=4, batch_size=32, val=_blobs(60, 1),
                     scheduler=sched, verbose=0)
    assert hist.epochs == 4
    assert hist["lr"] == [0.1, 0.1, 0.05, 0.05]
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] >= 0.95
    loss, acc = train.evaluate(model, nn.CrossEntropyLoss(), _blobs(60, 2))
    assert acc >= 0.95 and loss < 0.5
    assert train.predict(model, data[0][:7]).shape == (7, 3)


def test_fit_is_reproducible_with_manual_seed():
    def run():
        cnnkit.manual_seed(11)
        model = _small_cnn()
        opt = optim.Adam(model.parameters(), lr=1e-2)
        return train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(), 2, 16, verbose=0)["loss"]

    assert run() == run()


def test_callback_stops_training_and_bad_arguments_are_rejected():
    model = _small_cnn()
    opt = optim.SGD(model.parameters(), lr=0.01)
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(64), 5, 16, verbose=0,
                     callbacks=[lambda epoch, logs, m: epoch == 1])
    assert hist.epochs == 2
    with pytest.raises(ValueError, match="labels"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (np.zeros((3, 1, 6, 6)), np.zeros(2, int)), 1, 2)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(8), 1, 0)


@pytest.fixture(scope="module")
def digits():
    """The shipped digits' fixed train/test split, normalised with the training statistics."""
    (xtr, ytr), (xte, yte) = data.load_mnist_digits("train"), data.load_mnist_digits("test")
    norm = data.Normalize.from_data(xtr)
    return (norm(xtr), ytr), (norm(xte), yte)


def test_lenet5_learns_real_digits(digits):
    train_set, test_set = digits
    cnnkit.manual_seed(0)
    model = cnnkit.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train.fit(model, nn.CrossEntropyLoss(), opt, train_set, epochs=3, batch_size=64, verbose=0)
    _, acc = train.evaluate(model, nn.CrossEntropyLoss(), test_set)
    assert acc >= 0.92


def test_lenet5_learns_as_well_as_the_same_recipe_in_pytorch(digits):
    """Same initial weights, same batches, same SGD: the two trainings end equally accurate."""
    torch = pytest.importorskip("torch")
    (xtr, ytr), (xte, yte) = digits
    cnnkit.manual_seed(1)
    ours = cnnkit.models.lenet5()
    theirs = torch_twins.lenet5(torch)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    opt = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    order = np.random.default_rng(0).permutation(len(xtr))
    for start in range(0, len(order), 64):  # one epoch
        idx = order[start : start + 64]
        out = ours(xtr[idx])
        crit(out, ytr[idx])
        opt.zero_grad()
        ours.backward(crit.backward(), input_grad=False)
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(xtr[idx])), torch.from_numpy(ytr[idx])).backward()
        topt.step()
    _, acc = train.evaluate(ours, crit, (xte, yte))
    with torch.no_grad():
        tacc = float((theirs(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    assert acc >= 0.85 and abs(acc - tacc) <= 0.01, (acc, tacc)


@pytest.mark.parametrize("columns", [80, 120])
def test_progress_keeps_every_number_on_screen(columns, monkeypatch, capsys):
    """tqdm sizes the bar from COLUMNS when stderr is not a terminal: every rendered line must fit,
    the running numbers use History's names, and the validation numbers get a line of their own."""
    monkeypatch.setenv("COLUMNS", str(columns))
    model = _small_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1)
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, _blobs(1200), 12, 8, val=_blobs(60, 1), verbose=1)
    rendered = [line for line in capsys.readouterr().err.replace("\r", "\n").split("\n") if line.strip()]
    assert rendered and all(len(line) <= columns for line in rendered), max(rendered, key=len)
    bars = [line for line in rendered if line.startswith("epoch 12/12 100%")]
    assert bars and f"loss={hist['loss'][-1]:.4f}, accuracy={hist['accuracy'][-1]:.4f}" in bars[-1]
    assert not any("acc=" in line for line in rendered)
    summary = rendered[-1]
    assert summary == (f"  val_loss={hist['val_loss'][-1]:.4f}, val_accuracy={hist['val_accuracy'][-1]:.4f}, "
                       f"lr=0.1, {hist['time'][-1]:.1f}s")
