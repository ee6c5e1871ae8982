"""Plots: PNG files written with matplotlib when it is installed, a clear ImportError when not."""

import sys

import numpy as np
import pytest

from cnnkit import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def test_missing_matplotlib_raises_import_error_with_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(ImportError, match=r'pip install "cnnkit\[plot\]"'):
        viz.plot_feature_maps(np.zeros((2, 4, 4)), tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


@pytest.fixture
def matplotlib():
    return pytest.importorskip("matplotlib")


HISTORY = {
    "loss": [2.3, 1.1, 0.6, 0.4],
    "val_loss": [2.0, 1.2, 0.8, 0.7],
    "accuracy": [0.2, 0.6, 0.8, 0.9],
    "val_accuracy": [0.25, 0.55, 0.75, 0.8],
    "lr": [0.1, 0.1, 0.01, 0.01],
}


def test_plot_history(matplotlib, tmp_path):
    viz.plot_history(HISTORY, tmp_path / "h.png")
    width, height = png_size(tmp_path / "h.png")
    assert width > 2 * height  # three panels side by side
    viz.plot_history({"loss": np.array([1.0, 0.5])}, tmp_path / "loss.png")
    narrow, _ = png_size(tmp_path / "loss.png")
    assert narrow < width


def test_plot_history_rejects_bad_input(matplotlib, tmp_path):
    with pytest.raises(TypeError, match="dict"):
        viz.plot_history([1, 2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="none of"):
        viz.plot_history({"loss": [], "other": [1]}, tmp_path / "x.png")
    with pytest.raises(TypeError, match="numbers"):
        viz.plot_history({"loss": [1.0, "a"]}, tmp_path / "x.png")


@pytest.mark.parametrize("shape", [(6, 1, 5, 5), (16, 3, 3, 3), (4, 6, 3, 3), (2, 40, 1, 1)])
def test_plot_kernels(matplotlib, tmp_path, shape):
    weight = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    weight[0] = 0  # a constant kernel must not divide by zero
    viz.plot_kernels(weight, tmp_path / "k.png")
    png_size(tmp_path / "k.png")


def test_plot_feature_maps(matplotlib, tmp_path):
    maps = np.random.default_rng(1).random((8, 12, 12))
    maps[2, 3, 3] = np.nan
    viz.plot_feature_maps(maps, tmp_path / "f.png")
    viz.plot_feature_maps(maps[None], tmp_path / "batch.png", max_maps=3)
    assert png_size(tmp_path / "f.png") and png_size(tmp_path / "batch.png")


def test_plot_shapes_are_checked(matplotlib, tmp_path):
    with pytest.raises(ValueError, match="4-D"):
        viz.plot_kernels(np.zeros((3, 3, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="no elements"):
        viz.plot_kernels(np.zeros((0, 1, 3, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="3-D"):
        viz.plot_feature_maps(np.zeros((2, 2, 4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="max_maps"):
        viz.plot_feature_maps(np.zeros((2, 4, 4)), tmp_path / "x.png", max_maps=0)
    assert not (tmp_path / "x.png").exists()


def _image_and_bar(figure):
    """The mosaic's image and the colour bar's axes (two axes: the image's and the bar's)."""
    assert len(figure.axes) == 2
    image_ax, bar_ax = figure.axes
    return image_ax.images[0], bar_ax


def test_history_axes_are_labelled_and_the_learning_rates_are_the_ticks(matplotlib, tmp_path):
    figure = viz.plot_history(HISTORY, tmp_path / "h.png")
    loss, accuracy, lr = figure.axes
    assert (loss.get_ylabel(), accuracy.get_ylabel(), lr.get_ylabel()) == ("loss", "accuracy", "learning rate")
    assert all(ax.get_xlabel() == "epoch" for ax in figure.axes)
    figure.canvas.draw()
    assert lr.get_yscale() == "log"
    np.testing.assert_allclose(lr.get_yticks(), [0.01, 0.1])
    assert [t.get_text() for t in lr.get_yticklabels()] == ["0.01", "0.1"]
    assert lr.yaxis.get_minorticklocs().size == 0
    schedule = viz.plot_history({"lr": [0.05, 0.05, 0.005, 0.0005]}, tmp_path / "lr.png")
    schedule.canvas.draw()
    assert [t.get_text() for t in schedule.axes[0].get_yticklabels()] == ["0.0005", "0.005", "0.05"]


def test_kernels_share_one_symmetric_colour_scale_with_a_bar(matplotlib, tmp_path):
    weight = np.random.default_rng(2).standard_normal((4, 2, 3, 3)).astype(np.float32)
    weight[1] *= 10  # one large kernel must not be rescaled to look like the others
    image, bar = _image_and_bar(viz.plot_kernels(weight, tmp_path / "k.png"))
    m = float(np.abs(weight).max())
    assert image.norm.vmin == -m and image.norm.vmax == m
    assert bar.get_ylabel() == "weight"
    shown = np.ma.filled(image.get_array(), np.nan)
    tile = shown[1:4, 1:4]  # output 0, input 0: drawn as stored, not normalised per tile
    np.testing.assert_allclose(tile, weight[0, 0], rtol=1e-6)
    rgb = viz.plot_kernels(np.ones((2, 3, 3, 3)) * [[[[1.0]], [[0.0]], [[-1.0]]]], tmp_path / "rgb.png")
    image, bar = _image_and_bar(rgb)
    np.testing.assert_allclose(image.get_array()[1, 1], [1.0, 0.5, 0.0])  # +m, 0, -m on the shared scale
    assert bar.get_ylabel() == "weight (each channel)"


def test_feature_maps_share_one_colour_scale_with_a_bar(matplotlib, tmp_path):
    maps = np.random.default_rng(3).random((5, 6, 6))
    maps[3] *= 4
    maps[1, 2, 2] = np.nan
    image, bar = _image_and_bar(viz.plot_feature_maps(maps, tmp_path / "f.png"))
    assert image.norm.vmin == np.nanmin(maps) and image.norm.vmax == np.nanmax(maps)
    assert bar.get_ylabel() == "activation"
    constant = viz.plot_feature_maps(np.full((2, 3, 3), 7.0), tmp_path / "c.png")
    image, _ = _image_and_bar(constant)
    assert image.norm.vmin < 7.0 < image.norm.vmax
