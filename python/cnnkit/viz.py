"""Training curves, convolution kernels and feature maps as PNG files.

Needs matplotlib (``pip install "cnnkit[plot]"``), imported only when a plot
is made. Figures are drawn with the Agg backend on their own canvas, never
through pyplot, so nothing changes the user's matplotlib state or opens a
window, and plots can be made from any thread.
"""

import math
import numbers

import numpy as np

from .functional import _int

__all__ = ["plot_history", "plot_kernels", "plot_feature_maps"]


def _figure(**kwargs):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'cnnkit.viz needs matplotlib: pip install "cnnkit[plot]" (or pip install matplotlib)'
        ) from None
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    figure.savefig(path, format="png", dpi=100)


def _series(history, key):
    values = history.get(key)
    if values is None:
        return None
    values = list(values)
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"history[{key!r}] must be a list of numbers, got an element of type {type(v).__name__}")
    return np.asarray(values, dtype=np.float64) if values else None


def plot_history(history, path):
    """Loss and accuracy per epoch, train and validation, and the learning rate.

    ``history`` is a dict of lists: ``"loss"``, ``"accuracy"``, ``"val_loss"``,
    ``"val_accuracy"`` and ``"lr"``, any of which may be missing. One panel per
    quantity present (the learning rate on a log scale).
    """
    if not isinstance(history, dict):
        raise TypeError(f"history must be a dict of lists, got {type(history).__name__}")
    panels = []
    for title, keys in (
        ("loss", ("loss", "val_loss")),
        ("accuracy", ("accuracy", "val_accuracy")),
        ("learning rate", ("lr",)),
    ):
        lines = [(key, s) for key in keys if (s := _series(history, key)) is not None]
        if lines:
            panels.append((title, lines))
    if not panels:
        raise ValueError("history has none of loss, accuracy, val_loss, val_accuracy, lr (or they are all empty)")
    figure = _figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
    for ax, (title, lines) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, values in lines:
            label = "validation" if key.startswith("val_") else ("train" if title != "learning rate" else "lr")
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        if title == "learning rate" and np.all(lines[0][1] > 0):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend()
    _save(figure, path)


def _normalise_tiles(tiles):
    """Scale each tile (first axis) to [0, 1] on its own; a constant tile becomes 0.5."""
    tiles = np.nan_to_num(np.asarray(tiles, dtype=np.float64))
    axes = tuple(range(1, tiles.ndim))
    low = tiles.min(axis=axes, keepdims=True)
    span = tiles.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1), 0.5)


def _mosaic(tiles, columns=None):
    """Tiles ``(n, h, w[, 3])`` laid out row by row with a one-pixel white border."""
    n, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1) + tiles.shape[3:])
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1) : (r + 1) * (h + 1), 1 + c * (w + 1) : (c + 1) * (w + 1)] = tile
    return canvas


def _limit(value, name):
    value = _int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _plot_mosaic(canvas, title, path):
    height, width = canvas.shape[:2]
    scale = 8.0 / max(height, width)
    figure = _figure(figsize=(max(2.0, width * scale), max(2.0, height * scale) + 0.4), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(canvas, cmap=None if canvas.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    _save(figure, path)


def plot_kernels(weight, path, max_kernels=256):
    """A convolution weight ``(out, in, kh, kw)`` as a grid of kernels, each scaled to its own range.

    With 3 input channels each kernel is one colour tile; otherwise every
    (output, input) channel pair is a grey tile, one row of ``in`` tiles per
    output channel. At most ``max_kernels`` tiles are drawn.
    """
    max_kernels = _limit(max_kernels, "max_kernels")
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (out, in, kh, kw), got shape {weight.shape}")
    if weight.size == 0:
        raise ValueError(f"weight has no elements, shape {weight.shape}")
    out_c, in_c = weight.shape[:2]
    if in_c == 3:
        tiles = _normalise_tiles(weight.transpose(0, 2, 3, 1))[:max_kernels]
        columns = None
    else:
        tiles = _normalise_tiles(weight.reshape(out_c * in_c, *weight.shape[2:]))[:max_kernels]
        columns = in_c if 1 < in_c <= 32 else None
    _plot_mosaic(_mosaic(tiles, columns), f"kernels {tuple(weight.shape)}", path)


def plot_feature_maps(maps, path, max_maps=64):
    """Feature maps ``(C, H, W)`` (or ``(1, C, H, W)``) as a grid, each scaled to its own range."""
    max_maps = _limit(max_maps, "max_maps")
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"maps must be 3-D (C, H, W) or a batch of one, got shape {maps.shape}")
    if maps.size == 0:
        raise ValueError(f"maps has no elements, shape {maps.shape}")
    _plot_mosaic(_mosaic(_normalise_tiles(maps[:max_maps])), f"feature maps {tuple(maps.shape)}", path)
