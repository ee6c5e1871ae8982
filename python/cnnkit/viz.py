"""Training curves, convolution kernels and feature maps as PNG files.

Needs matplotlib (``pip install "cnnkit[plot]"``), imported only when a plot
is made. Figures are drawn with the Agg backend on their own canvas, never
through pyplot, so nothing changes the user's matplotlib state or opens a
window, and plots can be made from any thread.
"""

import math
import numbers

import numpy as np

from .functional import _positive_int

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
    quantity present, its y-axis labelled; the learning rate is on a log scale
    with a tick at each value used. Returns the matplotlib Figure.
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
        if title == "learning rate":
            _label_learning_rates(ax, lines[0][1])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend()
    _save(figure, path)
    return figure


def _label_learning_rates(ax, values):
    """A tick, labelled with its value, at each learning rate used (a schedule has few)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    used = np.unique(values[np.isfinite(values)])
    if used.size and np.all(used > 0):
        ax.set_yscale("log")
    if 0 < used.size <= 12:
        ax.yaxis.set_major_locator(FixedLocator(used))
        ax.yaxis.set_major_formatter(FixedFormatter([f"{v:.3g}" for v in used]))
        ax.yaxis.set_minor_locator(NullLocator())


def _mosaic(tiles, columns=None, border=np.nan):
    """Tiles ``(n, h, w[, 3])`` laid out row by row with a one-pixel ``border``."""
    n, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1) + tiles.shape[3:], border, dtype=np.float64)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1) : (r + 1) * (h + 1), 1 + c * (w + 1) : (c + 1) * (w + 1)] = tile
    return canvas


def _plot_mosaic(canvas, title, path, low, high, cmap, label, border="white"):
    """All tiles on one colour scale from ``low`` to ``high``, with a colour bar.

    An RGB canvas (already mapped to [0, 1] on that scale) gets a grey bar that
    reads each channel's value. ``border`` colours the gaps between tiles (and NaN).
    """
    height, width = canvas.shape[:2]
    scale = 8.0 / max(height, width)
    figure = _figure(figsize=(max(2.0, width * scale) + 1.2, max(2.0, height * scale) + 0.4), layout="constrained")
    # After _figure, which says how to install matplotlib when it is missing.
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ax = figure.add_subplot()
    if canvas.ndim == 3:
        ax.imshow(canvas, interpolation="nearest")
        mappable = ScalarMappable(Normalize(low, high), cmap="gray")
    else:
        colours = colormaps[cmap].with_extremes(bad=border)
        mappable = ax.imshow(canvas, cmap=colours, vmin=low, vmax=high, interpolation="nearest")
    figure.colorbar(mappable, ax=ax, label=label, shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    _save(figure, path)
    return figure


def _finite_range(values, symmetric):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    if symmetric:
        m = float(np.abs(finite).max()) or 1.0
        return -m, m
    low, high = float(finite.min()), float(finite.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def plot_kernels(weight, path, max_kernels=256):
    """A convolution weight ``(out, in, kh, kw)`` as a grid of kernels on one colour scale.

    The scale runs from ``-m`` to ``m``, ``m`` the largest ``|weight|`` drawn, so
    tiles compare with each other and zero is the middle colour; a colour bar
    reads the values. With 3 input channels each kernel is one colour tile (each
    channel on that scale); otherwise every (output, input) channel pair is a
    tile, one row of ``in`` tiles per output channel. At most ``max_kernels``
    tiles are drawn. Returns the matplotlib Figure.
    """
    max_kernels = _positive_int(max_kernels, "max_kernels")
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (out, in, kh, kw), got shape {weight.shape}")
    if weight.size == 0:
        raise ValueError(f"weight has no elements, shape {weight.shape}")
    out_c, in_c = weight.shape[:2]
    values = weight.astype(np.float64)
    if in_c == 3:
        tiles = values.transpose(0, 2, 3, 1)[:max_kernels]
        low, high = _finite_range(tiles, symmetric=True)
        canvas = _mosaic(np.clip((np.nan_to_num(tiles) - low) / (high - low), 0, 1), border=1.0)
        label = "weight (each channel)"
    else:
        tiles = values.reshape(out_c * in_c, *weight.shape[2:])[:max_kernels]
        low, high = _finite_range(tiles, symmetric=True)
        canvas = _mosaic(tiles, in_c if 1 < in_c <= 32 else None)
        label = "weight"
    # Grey gaps: white would read as a weight of zero on this scale.
    return _plot_mosaic(canvas, f"kernels {tuple(weight.shape)}", path, low, high, "RdBu_r", label, border="0.6")


def plot_feature_maps(maps, path, max_maps=64):
    """Feature maps ``(C, H, W)`` (or ``(1, C, H, W)``) as a grid on one colour scale.

    The scale spans the smallest to the largest value drawn, so maps compare
    with each other; a colour bar reads the values and NaN shows as white.
    Returns the matplotlib Figure.
    """
    max_maps = _positive_int(max_maps, "max_maps")
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"maps must be 3-D (C, H, W) or a batch of one, got shape {maps.shape}")
    if maps.size == 0:
        raise ValueError(f"maps has no elements, shape {maps.shape}")
    tiles = maps[:max_maps].astype(np.float64)
    low, high = _finite_range(tiles, symmetric=False)
    return _plot_mosaic(_mosaic(tiles), f"feature maps {tuple(maps.shape)}", path, low, high, "viridis",
                        "activation")
