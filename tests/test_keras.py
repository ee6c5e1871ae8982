"""Keras-style compile / fit / evaluate / predict, string names, EarlyStopping and ModelCheckpoint."""

import os
import re

import numpy as np
import pytest

import cnnkit
from cnnkit import io, nn, optim, train
from cnnkit.keras import OPTIMIZERS, EarlyStopping, ModelCheckpoint
from test_train import _blobs, _small_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log_softmax64(logits):
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_compile_fit_evaluate_predict_learn_a_classifier():
    cnnkit.manual_seed(0)
    model = _small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _blobs(600)
    history = model.fit(x, y, epochs=6, batch_size=16, validation_split=0.25, verbose=0)
    assert history.epochs == 6 and len(history.history["val_accuracy"]) == 6
    assert history["val_accuracy"][-1] >= 0.95
    xt, yt = _blobs(90, 2)
    loss, accuracy = model.evaluate(xt, yt)
    model.eval()
    logits = model(xt)
    log_p = _log_softmax64(logits)
    assert loss == pytest.approx(-log_p[np.arange(len(yt)), yt].mean(), rel=1e-5)
    assert accuracy == np.mean(logits.argmax(axis=1) == yt)
    assert model.evaluate(xt, yt, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    probabilities = model.predict(xt, batch_size=len(xt))  # one batch, as model(xt) above
    np.testing.assert_allclose(probabilities, np.exp(log_p), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model.predict(xt, batch_size=len(xt), logits=True), logits)


def test_fit_is_train_fit_with_the_compiled_pieces():
    """A thin wrapper: the same seed gives the same weights as cnnkit.train.fit with SGD(lr=0.01)."""
    x, y = _blobs(96)
    cnnkit.manual_seed(4)
    ours = _small_cnn()
    ours.compile("sgd", "cross_entropy")
    ours.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:10], y[:10]), verbose=0)
    cnnkit.manual_seed(4)
    direct = _small_cnn()
    train.fit(direct, nn.CrossEntropyLoss(), optim.SGD(direct.parameters(), lr=0.01), (x, y), 2, 8, verbose=0)
    for key, value in direct.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value)


def test_validation_split_holds_out_the_last_samples():
    x, y = _blobs(100)
    cnnkit.manual_seed(1)
    model = _small_cnn()
    model.compile("sgd", "cross_entropy")
    split = model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    cnnkit.manual_seed(1)
    again = _small_cnn()
    again.compile("sgd", "cross_entropy")
    explicit = again.fit(x[:80], y[:80], epochs=2, validation_data=(x[80:], y[80:]), verbose=0)
    assert split["val_loss"] == explicit["val_loss"] and split["loss"] == explicit["loss"]
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5)


def test_regression_with_mse_gives_raw_outputs_and_a_scalar_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1, 2, 2)).astype(np.float32)
    w = np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    y = x.reshape(200, 4) @ w
    cnnkit.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    model.compile(optim.SGD(model.parameters(), lr=0.05), "mse")
    model.fit(x, y, epochs=20, batch_size=20, verbose=0)
    loss = model.evaluate(x, y)
    assert isinstance(loss, float) and loss < 1e-3
    np.testing.assert_allclose(model.predict(x[:5]), y[:5], atol=0.05)


@pytest.mark.parametrize("name,cls", [("sparse_categorical_crossentropy", nn.CrossEntropyLoss),
                                      ("cross_entropy", nn.CrossEntropyLoss), ("mse", nn.MSELoss),
                                      ("mean_squared_error", nn.MSELoss), ("mae", nn.L1Loss),
                                      ("MEAN_ABSOLUTE_ERROR", nn.L1Loss), ("multi_margin", nn.MultiMarginLoss)])
def test_loss_names(name, cls):
    model = _small_cnn()
    model.compile("sgd", name)
    assert type(model._compiled.loss) is cls


@pytest.mark.parametrize("name,cls,lr", [("sgd", optim.SGD, 0.01), ("adam", optim.Adam, 0.001),
                                         ("adamw", optim.AdamW, 0.001), ("rmsprop", optim.RMSprop, 0.001),
                                         ("Adagrad", optim.Adagrad, 0.001)])
def test_optimizer_names_use_keras_learning_rates(name, cls, lr):
    model = _small_cnn()
    model.compile(name, "mse")
    opt = model._compiled.optimizer
    assert type(opt) is cls and opt.param_groups[0]["lr"] == lr
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    assert OPTIMIZERS[name.lower()] == (cls.__name__, lr)


def test_compile_rejects_what_it_cannot_use():
    model = _small_cnn()
    with pytest.raises(RuntimeError, match=r"model.compile\(optimizer, loss\) before model.fit"):
        model.fit(*_blobs(8))
    with pytest.raises(RuntimeError, match="before model.evaluate"):
        model.evaluate(*_blobs(8))
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose from .*cross_entropy"):
        model.compile("sgd", "hinge")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; choose from .*adam"):
        model.compile("lbfgs", "mse")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile("sgd", "mse", metrics=["f1"])
    with pytest.raises(ValueError, match="needs a loss"):
        model.compile("sgd")
    with pytest.raises(TypeError, match="optimizer must be"):
        model.compile(3, "mse")
    with pytest.raises(TypeError, match="loss must be"):
        model.compile("sgd", 3)
    other = _small_cnn()
    with pytest.raises(ValueError, match="does not hold all"):
        model.compile(optim.SGD(other.parameters(), lr=0.1), "mse")
    model.compile(optim.Adam, nn.MSELoss)
    assert isinstance(model._compiled.optimizer, optim.Adam) and isinstance(model._compiled.loss, nn.MSELoss)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(*_blobs(8), batch_size=0)


def _weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_early_stopping_counts_patience_and_restores_the_best_weights():
    model = nn.Sequential(nn.Linear(2, 1))
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    best = None
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7]):
        model[0].weight.data[...] = epoch
        assert not stop(epoch, {"val_loss": val_loss}, model)
        if val_loss == 0.5:
            best = _weights(model)
    model[0].weight.data[...] = 3
    assert stop(3, {"val_loss": 0.55}, model)  # the second epoch in a row without improvement
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1
    stop.on_train_end(model)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], best["0.weight"])

    up = EarlyStopping(monitor="val_accuracy", min_delta=0.05)  # auto: accuracy goes up
    assert not up(0, {"val_accuracy": 0.5}, model)
    assert up(1, {"val_accuracy": 0.52}, model)  # within min_delta: no improvement
    with pytest.raises(ValueError, match="monitors 'val_loss', but the epoch's logs have only loss"):
        EarlyStopping()(0, {"loss": 1.0}, model)


def test_early_stopping_stops_fit_and_leaves_the_best_epochs_weights(tmp_path):
    x, y = _blobs(120)
    cnnkit.manual_seed(0)
    model = _small_cnn()
    model.compile(optim.SGD(model.parameters(), lr=2.0), "cross_entropy")  # far too large: diverges
    stop = EarlyStopping(patience=1, restore_best_weights=True)
    keep = ModelCheckpoint(str(tmp_path / "best.safetensors"), save_best_only=True)
    history = model.fit(x, y, epochs=30, batch_size=8, validation_split=0.25, callbacks=[stop, keep], verbose=0)
    assert history.epochs < 30 and history.epochs == stop.stopped_epoch + 1
    best = int(np.argmin(history["val_loss"]))
    assert stop.best_epoch == best
    # ModelCheckpoint wrote the best epoch's weights, which EarlyStopping put back.
    saved = io.load(str(tmp_path / "best.safetensors"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(saved[key], value)
    model.compile(optim.SGD(model.parameters(), lr=2.0), "cross_entropy")
    assert model.evaluate(x[90:], y[90:]) == pytest.approx(history["val_loss"][best], rel=1e-6)


def test_model_checkpoint_names_files_by_epoch_and_logs(tmp_path):
    model = nn.Sequential(nn.Linear(2, 1))
    every = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.safetensors"))
    for epoch, val_loss in enumerate([0.5, 0.75]):
        model[0].weight.data[...] = epoch
        every(epoch, {"val_loss": val_loss}, model)
    assert sorted(os.listdir(tmp_path)) == ["m-01-0.50.safetensors", "m-02-0.75.safetensors"]
    assert io.load(str(tmp_path / "m-02-0.75.safetensors"))["0.weight"].max() == 1
    best_acc = ModelCheckpoint(str(tmp_path / "best.safetensors"), monitor="val_accuracy", save_best_only=True)
    for epoch, acc in enumerate([0.5, 0.9, 0.8]):
        model[0].weight.data[...] = epoch
        best_acc(epoch, {"val_accuracy": acc}, model)
    assert io.load(str(tmp_path / "best.safetensors"))["0.weight"].max() == 1


def test_readme_keras_script_runs_as_written(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Keras-style training"):]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "README.md (Keras-style training)", "exec"), {})
    assert (tmp_path / "lenet5.safetensors").exists() and (tmp_path / "best.safetensors").exists()


def _early_stopped_run(directory, epochs, resume=False):
    x, y = _blobs(120)
    model = _small_cnn()
    model.compile(optim.SGD(model.parameters(), lr=2.0), "cross_entropy")
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=epochs, batch_size=8, validation_split=0.25, callbacks=[stop], verbose=0,
                        checkpoint_dir=directory, resume=resume)
    return model, stop, history


def test_fit_resumes_with_the_callbacks_state(tmp_path):
    """EarlyStopping's best value, patience count and best weights travel in the checkpoint, so a run
    cut short and resumed stops at the same epoch with the same weights as the whole run."""
    cnnkit.manual_seed(0)
    whole, stop, history = _early_stopped_run(tmp_path / "whole", 30)
    assert stop.stopped_epoch is not None and stop.best_epoch < stop.stopped_epoch
    cnnkit.manual_seed(0)
    _early_stopped_run(tmp_path / "cut", stop.stopped_epoch)  # ends one epoch before the stop
    resumed, rstop, rhistory = _early_stopped_run(tmp_path / "cut", 30, resume=True)
    assert (rstop.stopped_epoch, rstop.best_epoch, rstop.wait) == (stop.stopped_epoch, stop.best_epoch, stop.wait)
    assert rhistory["val_loss"] == history["val_loss"]
    for key, value in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value)
    model = _small_cnn()
    model.compile("sgd", "cross_entropy")
    with pytest.raises(ValueError, match="callback 0 is a EarlyStopping, this run's is a ModelCheckpoint"):
        model.fit(*_blobs(120), epochs=30, validation_split=0.25, verbose=0, checkpoint_dir=tmp_path / "cut",
                  resume=True, callbacks=[ModelCheckpoint(str(tmp_path / "m.safetensors"))])
